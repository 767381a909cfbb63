"""The LLM teacher over real HTTP servers: a scripted one and `transformers serve` with SmolLM2."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from test_loop import TINY

from leap.config import load_config
from leap.envs import env_spec, make_env
from leap.io import read_jsonl
from leap.loop import LeapRun
from leap.models import load_chat_model, resolve_model_path
from leap.models.cache import CachedChatModel
from leap.rollout import run_episodes
from leap.teachers import Budget, BudgetExceeded, LLMTeacher

from servers import FAULT_CAUSES, FaultyServer, ScriptedServer, transformers_serve


def _failed_episodes(n: int = 2, horizon: int = 3):
    searcher = env_spec("household").expert("searcher")
    episodes = run_episodes(
        lambda: make_env("household"),
        [f"train/{i:04d}" for i in range(n)],
        searcher,
        horizon=horizon,
        show_progress=False,
    )
    assert not any(e.success for e in episodes)
    return episodes


def _look_everywhere(body: dict) -> str:
    """A teacher that answers every step with `look`, and says which steps it saw."""
    prompt = body["messages"][-1]["content"]
    steps = sorted({int(t) for t in re.findall(r"\[t=(\d+)\]", prompt)})
    return (
        "Sure!\n```json\n"
        + json.dumps(
            {
                "summary": "explore",
                "steps": [{"t": t, "reason": "I look around first.", "action": "look"} for t in steps],
            }
        )
        + "\n```"
    )


def test_trajectory_corrections_from_a_scripted_server(tmp_path) -> None:
    episodes = _failed_episodes()
    with ScriptedServer(responder=_look_everywhere) as server:
        model = CachedChatModel(
            load_chat_model("openai:teacher", base_url=server.base_url), tmp_path / "c.jsonl"
        )
        teacher = LLMTeacher(model, mode="trajectory", privilege=50)
        corrections = teacher.correct(episodes, lambda: make_env("household"))
        assert len(server.requests) == 2
        prompt = server.requests[0]["messages"][-1]["content"]
        assert "Privileged information" in prompt and "Optimal remaining actions" in prompt
        assert [len(c.steps) for c in corrections] == [3, 3]
        assert all(s.action == "look" and not s.leaks for c in corrections for s in c.steps)
        assert corrections[0].summary == "explore"
        again = teacher.correct(episodes, lambda: make_env("household"))
        assert len(server.requests) == 2 and model.hits == 2  # no request paid twice
        assert [c.to_record() for c in again] == [c.to_record() for c in corrections]


def test_privilege_zero_hides_the_privileged_state() -> None:
    with ScriptedServer(responder=_look_everywhere) as server:
        model = load_chat_model("openai:teacher", base_url=server.base_url)
        LLMTeacher(model, mode="trajectory", privilege=0).correct(
            _failed_episodes(1), lambda: make_env("household")
        )
        prompt = server.requests[0]["messages"][-1]["content"]
    assert "Optimal remaining actions" not in prompt and "no privileged information" in prompt


def test_unusable_replies_are_retried_then_counted() -> None:
    with ScriptedServer(responder=lambda body: "I cannot help with that.") as server:
        model = load_chat_model("openai:teacher", base_url=server.base_url)
        corrections = LLMTeacher(model, mode="trajectory", max_retries=2).correct(
            _failed_episodes(), lambda: make_env("household")
        )
    assert len(server.requests) == 2 * 3  # first try + 2 retries per episode
    assert [dict(c.rejections) for c in corrections] == [{"no_json": 3}, {"no_json": 3}]
    assert all(not c.steps for c in corrections)


def test_step_mode_and_leak_dropping() -> None:
    def leaky(body: dict) -> str:
        secret = re.search(r"Essential objects: (\S+ \d+)", body["messages"][-1]["content"])
        return f"REASON: The {secret.group(1) if secret else 'thing'} is hidden here.\nACTION: look"

    episodes = _failed_episodes(n=3, horizon=1)  # the student has seen nothing but the room yet
    with ScriptedServer(responder=leaky) as server:
        model = load_chat_model("openai:teacher", base_url=server.base_url)
        kept = LLMTeacher(model, mode="step").correct(episodes, lambda: make_env("household"))
        dropped = LLMTeacher(model, mode="step", drop_leaks=True).correct(
            episodes, lambda: make_env("household")
        )
    assert len(server.requests) == 2 * 3  # one request per step, twice
    assert all(s.leaks for c in kept for s in c.steps) and sum(len(c.steps) for c in kept) == 3
    assert sum(len(c.steps) for c in dropped) == 0 and sum(c.rejections["leak"] for c in dropped) == 3


def test_budget_stops_the_teacher_and_the_run_cleanly(tmp_path) -> None:
    with pytest.raises(BudgetExceeded):
        Budget(max_teacher_tokens=10).check(8, 3)
    with ScriptedServer(responder=_look_everywhere) as server:
        data = json.loads(json.dumps(TINY))
        data.update(name="budget", output_dir=str(tmp_path))
        data["loop"] = {"iterations": 2, "rollouts_per_iteration": 3}
        data["teacher"] = {"kind": "llm", "model": "openai:teacher", "base_url": server.base_url}
        data["budget"] = {"max_teacher_tokens": 20}  # one batch of replies (14 tokens each) spends it
        path = tmp_path / "budget.yaml"
        path.write_text(yaml.safe_dump(data))
        summary = LeapRun(load_config(path)).run()
    assert "budget" in summary["stopped_early"]
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1]
    assert (tmp_path / "budget" / "final" / "test_iter_0" / "summary.json").exists()


@pytest.mark.slow
def test_llm_teacher_against_transformers_serve(tmp_path) -> None:
    model_dir = resolve_model_path("smollm2-135m")
    episodes = _failed_episodes()
    with transformers_serve(model_dir) as base_url:
        model = CachedChatModel(
            load_chat_model(f"openai:{model_dir}", base_url=base_url), tmp_path / "c.jsonl"
        )
        for mode, tokens in (("trajectory", 160), ("step", 40)):
            teacher = LLMTeacher(model, mode=mode, privilege=50, max_retries=1, max_new_tokens=tokens)
            corrections = teacher.correct(episodes, lambda: make_env("household"))
            for episode, c in zip(episodes, corrections, strict=True):
                assert len(c.steps) <= episode.n_actions
                assert len(c.steps) + sum(c.rejections.values()) >= episode.n_actions
                assert all(s.action for s in c.steps)
        requests = model.usage.requests
        assert requests > 0 and model.usage.completion_tokens > 0
        LLMTeacher(model, mode="step", privilege=50, max_retries=1, max_new_tokens=40).correct(
            episodes, lambda: make_env("household")
        )
        assert model.usage.requests == requests  # the second pass is served from the cache


def test_demonstrations_from_a_log_file_get_llm_reasons(tmp_path) -> None:
    planner = env_spec("household").expert("planner")
    logs = run_episodes(
        lambda: make_env("household"), ["train/0000", "train/0001"], planner, show_progress=False
    )
    for e in logs:
        for s in e.steps:
            s.reason = ""  # logs without reasons
    log_file = tmp_path / "logs.jsonl"
    log_file.write_text("".join(json.dumps(e.to_record()) + "\n" for e in logs))

    def reason_for(body: dict) -> str:
        action = re.search(r"next action was: (.+)", body["messages"][-1]["content"]).group(1)
        return f"REASON: I want to {action}."

    with ScriptedServer(responder=reason_for) as server:
        data = json.loads(json.dumps(TINY))
        data.update(name="logs", output_dir=str(tmp_path))
        data["loop"] = {"iterations": 0}
        data["demos"] = {"source": "file", "path": str(log_file), "reasons": "llm", "n_episodes": 5}
        data["teacher"] = {"kind": "programmatic", "model": "openai:labeller", "base_url": server.base_url}
        path = tmp_path / "logs.yaml"
        path.write_text(yaml.safe_dump(data))
        LeapRun(load_config(path)).run()
        assert len(server.requests) == sum(e.n_actions for e in logs)
    samples = [json.loads(line) for line in (tmp_path / "logs" / "iter_0" / "samples.jsonl").open()]
    assert len(samples) == sum(e.n_actions for e in logs)
    for sample in samples:
        action = sample["completion"].split("\nACTION: ")[1]
        assert sample["completion"] == f"REASON: I want to {action}.\nACTION: {action}"


def test_a_run_survives_a_faulty_teacher_server(tmp_path) -> None:
    """500s, 429s with Retry-After, dropped connections, stalls past the timeout and truncated
    JSON, mixed with valid replies: the run finishes, every fault is retried and counted by its
    cause, no failed episode goes without its correction record, and the budget counts only the
    replies that arrived."""
    with FaultyServer(_look_everywhere, seed=3, fault_rate=0.6, stall_s=1.0) as server:
        data = json.loads(json.dumps(TINY))
        data.update(name="faulty", output_dir=str(tmp_path))
        data["loop"] = {"iterations": 1, "rollouts_per_iteration": 4}
        data["teacher"] = {
            "kind": "llm",
            "model": "openai:teacher",
            "base_url": server.base_url,
            "timeout_s": 0.5,
            "request_retries": 4,
            "max_concurrency": 4,
        }
        path = tmp_path / "faulty.yaml"
        path.write_text(yaml.safe_dump(data))
        summary = LeapRun(load_config(path)).run()
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1] and not summary["stopped_early"]
    run = tmp_path / "faulty"
    faults = {kind: n for kind, n in server.injected.items() if kind != "ok"}
    assert set(faults) == set(FAULT_CAUSES), server.injected  # every kind of fault happened
    counted: dict[str, int] = {}
    paid = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for k in (1,):
        stats = json.loads((run / f"iter_{k}" / "teacher_stats.json").read_text())
        for key, n in stats["usage"].items():
            if key.startswith("faults/"):
                counted[key.removeprefix("faults/")] = counted.get(key.removeprefix("faults/"), 0) + n
        paid["prompt_tokens"] += stats["usage"]["prompt_tokens"]
        paid["completion_tokens"] += stats["usage"]["completion_tokens"]
        paid["cost_usd"] += stats["cost_usd"]
        assert stats["usage"]["failures"] == 0  # each request got through within its retries
        episodes = {e["episode_id"]: e for e in read_jsonl(run / f"iter_{k}" / "rollout" / "episodes.jsonl")}
        corrections = list(read_jsonl(run / f"iter_{k}" / "corrections.jsonl"))
        failed = [e for e in episodes.values() if not e["success"]]
        assert len(corrections) == len(failed) == stats["episodes_corrected"]  # nothing lost
        for c in corrections:
            assert len(c["steps"]) == len(episodes[c["episode_id"]]["steps"])
    assert counted == {FAULT_CAUSES[kind]: n for kind, n in faults.items()}
    print(f"\nfaults injected and survived, by cause: {counted}; replies delivered: {server.injected['ok']}")
    # only the replies that arrived were paid for: 11 + 3 tokens each at the default prices
    delivered = server.injected["ok"]
    assert paid["prompt_tokens"] == 11 * delivered and paid["completion_tokens"] == 3 * delivered
    assert paid["cost_usd"] == pytest.approx(Budget().cost(11 * delivered, 3 * delivered))
    cached = list(read_jsonl(run / "teacher_cache.jsonl"))
    assert len(cached) == delivered  # every paid reply is kept: a resumed run pays nothing twice

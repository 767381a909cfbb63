"""The LEAP loop end to end on the tiny model: stages, lineage, aggregation, resume, DPO/KTO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leap.cli import app
from leap.config import load_config
from leap.io import read_jsonl
from leap.loop import LeapRun

TINY = {
    "seed": 0,
    "env": {
        "name": "household",
        "horizon": 12,
        "n_valid": 3,
        "n_test": 3,
        "options": {"split_sizes": {"train": 40, "valid": 6, "test_ood": 6}},
    },
    "student": {
        "model": "tiny-random",
        "max_new_tokens": 8,
        "batch_size": 8,
        "dtype": "float32",
        "device": "cpu",
        "prompt": {"style": "student", "history_steps": 2},
    },
    "teacher": {"kind": "programmatic", "privilege": 50},
    "demos": {"n_episodes": 3},
    "loop": {"iterations": 2, "rollouts_per_iteration": 3},
    "train": {
        "lora_r": 4,
        "lora_alpha": 8,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "batch_size": 2,
        "max_length": 512,
        "bf16": False,
        "device": "cpu",
    },
}


def _config(tmp_path: Path, name: str, **sections: dict) -> Path:
    data = json.loads(json.dumps(TINY))
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    data.update(name=name, output_dir=str(tmp_path / "runs"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _files(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): p.read_text()
        for p in sorted(run.rglob("*.jsonl"))
        if "metrics" not in p.name and "cache" not in p.name
    }


def test_every_stage_runs_and_writes_its_outputs(tmp_path) -> None:
    config = load_config(_config(tmp_path, "full"))
    summary = LeapRun(config).run()
    run = config.run_dir
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1, 2]
    for k in (0, 1, 2):
        assert (run / f"iter_{k}" / "adapter" / "adapter_config.json").exists()
        assert (run / f"iter_{k}" / "adapter" / "train_metrics.json").exists()
        assert json.loads((run / f"iter_{k}" / "eval_valid" / "summary.json").read_text())["n_episodes"] == 3
    for k in (1, 2):
        assert len(list(read_jsonl(run / f"iter_{k}" / "rollout" / "episodes.jsonl"))) == 3
        stats = json.loads((run / f"iter_{k}" / "teacher_stats.json").read_text())
        assert stats["episodes_corrected"] == 3  # a random student fails everything
        assert stats["steps_accepted"] == 36 and stats["leakage_rate"] == 0.0
    # fresh training tasks in each iteration
    tasks = [
        {e["task_id"] for e in read_jsonl(run / f"iter_{k}" / "rollout" / "episodes.jsonl")} for k in (1, 2)
    ]
    assert not tasks[0] & tasks[1]
    # D_i is the union of all iterations so far, with lineage
    samples = [list(read_jsonl(run / f"iter_{k}" / "samples.jsonl")) for k in (0, 1, 2)]
    rows = [list(read_jsonl(run / f"iter_{k}" / "train" / "sft.jsonl")) for k in (0, 1, 2)]
    assert [len(r) for r in rows] == [
        len(samples[0]),
        len(samples[0]) + len(samples[1]),
        sum(map(len, samples)),
    ]
    sample = samples[1][0]
    assert sample["iteration"] == 1 and sample["teacher"] == "household-teacher@50"
    assert sample["template"] == "student" and len(sample["template_sha"]) == 12
    assert sample["rejected"] is not None and sample["completion"].startswith("REASON: ")
    # the input is the student's own history: the prompt shows the actions the student took
    episode = next(
        e
        for e in read_jsonl(run / "iter_1" / "rollout" / "episodes.jsonl")
        if e["episode_id"] == sample["episode_id"]
    )
    later = next(s for s in samples[1] if s["episode_id"] == sample["episode_id"] and s["step"] == 1)
    assert f"> {episode['steps'][0]['action']}" in later["prompt"][1]["content"]
    assert later["rejected"] == episode["steps"][1]["raw"]
    # metrics and the final summary
    stages = [m["stage"] for m in read_jsonl(run / "metrics.jsonl")]
    assert stages.count("train") == 3 and stages.count("valid") == 3 and "test" in stages
    assert (run / "final" / "test_iter_0" / "summary.json").exists()
    # BC and the best LEAP iteration are both tested, whichever validation selects
    leap_best = summary["best_leap_iteration"]
    assert leap_best in (1, 2) and summary["best_iteration"] in (0, leap_best)
    assert (run / "final" / f"test_iter_{leap_best}" / "summary.json").exists()
    tested = [r["iteration"] for r in summary["iterations"] if r["test"] is not None]
    assert tested == [0, leap_best]
    assert json.loads((run / "summary.json").read_text()) == summary


def test_transcript_prompts_train_on_packed_sequences(tmp_path) -> None:
    """With the turns layout and a full history, a demonstration trains as one sequence and the
    corrections of an episode ride on one copy of its transcript."""
    prompt = {"style": "student", "layout": "turns", "history_steps": 12, "list_actions": False}
    loop = {"iterations": 1, "correction_steps": "divergent", "max_repeats_per_episode": 1}
    sections = {"student": {"prompt": prompt}, "loop": loop, "train": {"max_length": 4096}}
    config = load_config(_config(tmp_path, "turns", **sections))
    notes: list[str] = []
    LeapRun(config, on_note=notes.append).run()
    run = config.run_dir
    # every stage says where it ran and how fast, on screen and in metrics.jsonl
    assert any("steps on cpu" in n and "tokens/s" in n for n in notes)
    assert any("env steps in" in n and "cpu ·" in n for n in notes)
    trained = [m for m in read_jsonl(run / "metrics.jsonl") if m["stage"] == "train"]
    assert all(m["device"] == "cpu" and m["attention"] == "sdpa" and m["tokens_per_s"] > 0 for m in trained)
    demos = list(read_jsonl(run / "iter_0" / "samples.jsonl"))
    bc = json.loads((run / "iter_0" / "adapter" / "train_metrics.json").read_text())
    episodes = {s["episode_id"] for s in demos}
    assert bc["rows"] == len(episodes) < len(demos)  # one packed row per demonstration
    assert bc["sequences"] == len(episodes)
    corrections = list(read_jsonl(run / "iter_1" / "samples.jsonl"))
    leap = json.loads((run / "iter_1" / "adapter" / "train_metrics.json").read_text())
    corrected = {s["episode_id"] for s in corrections}
    # a random student's replies never equal the teacher's: one row per corrected step, and
    # every row joins a trunk that holds its prompt (its own episode's, or a demonstration of the
    # same task that began the same way): at most one sequence per episode
    assert leap["rows"] == len(episodes) + len(corrections)
    assert leap["sequences"] <= len(episodes) + len(corrected)
    # the selection of corrected steps: one sample per corrected action and episode, the rest
    # counted in metrics.jsonl
    stats = json.loads((run / "iter_1" / "teacher_stats.json").read_text())
    select = next(m for m in read_jsonl(run / "metrics.jsonl") if m["stage"] == "select")
    assert select["samples"] == len(corrections)
    assert len(corrections) + sum(select["dropped"].values()) == stats["steps_accepted"]
    actions = [(s["episode_id"], s["completion"].rsplit("ACTION: ", 1)[1]) for s in corrections]
    assert len(set(actions)) == len(actions) and select["dropped"]["repeated_action"] > 0


class Killed(Exception):
    pass


def test_resume_after_a_kill_during_training(tmp_path, monkeypatch) -> None:
    import leap.loop

    path = _config(tmp_path, "resume", loop={"iterations": 1})
    real = leap.loop.train_adapter
    calls = {"n": 0}

    def dies_on_second_training(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(leap.loop, "train_adapter", dies_on_second_training)
    with pytest.raises(Killed):
        LeapRun(load_config(path)).run()
    run = load_config(path).run_dir
    before = _files(run)
    assert "iter_1/corrections.jsonl" in before and not (run / "iter_1" / "adapter").exists()

    corrected = {"n": 0}
    real_correct = LeapRun.corrections

    def counting(self, k, episodes):
        corrected["n"] += 1
        return real_correct(self, k, episodes)

    monkeypatch.setattr(LeapRun, "corrections", counting)
    monkeypatch.setattr(leap.loop, "train_adapter", real)
    LeapRun(load_config(path)).run()
    after = _files(run)
    assert {k: v for k, v in after.items() if k in before} == before  # same data, nothing redone
    assert corrected["n"] == 0  # the iteration's samples are read back from disk: no teacher at all
    assert (run / "iter_1" / "adapter" / "adapter_config.json").exists()


def test_self_teacher_requests_are_cached_across_a_kill(tmp_path, monkeypatch) -> None:
    from leap.teachers.llm import LLMTeacher

    path = _config(
        tmp_path,
        "self",
        loop={"iterations": 1, "rollouts_per_iteration": 4},
        teacher={"kind": "self", "mode": "step", "max_new_tokens": 8, "max_retries": 1},
    )
    real_chunk = LLMTeacher._correct_chunk
    seen = {"chunks": 0}

    def dies_after_first_chunk(self, episodes, env):
        seen["chunks"] += 1
        if seen["chunks"] == 2:
            raise Killed
        return real_chunk(self, episodes, env)

    monkeypatch.setattr(LLMTeacher, "_correct_chunk", dies_after_first_chunk)
    original_init = LLMTeacher.__init__

    def small_chunks(self, *args, **kwargs):
        original_init(self, *args, **{**kwargs, "batch_episodes": 2})

    monkeypatch.setattr(LLMTeacher, "__init__", small_chunks)
    with pytest.raises(Killed):
        LeapRun(load_config(path)).run()
    run = load_config(path).run_dir
    cached = list(read_jsonl(run / "teacher_cache.jsonl"))
    assert cached, "the first chunk's requests are on disk"

    monkeypatch.setattr(LLMTeacher, "_correct_chunk", real_chunk)
    teachers = []
    real_teacher = LeapRun.teacher

    def keep(self, k):
        teachers.append(real_teacher(self, k))
        return teachers[-1]

    monkeypatch.setattr(LeapRun, "teacher", keep)
    LeapRun(load_config(path)).run()
    model = teachers[0].model
    assert model.hits >= len(cached)  # every earlier request answered from the cache
    assert model.usage.requests + model.hits == len(list(read_jsonl(run / "teacher_cache.jsonl"))) + (
        model.usage.failures
    )
    stats = json.loads((run / "iter_1" / "teacher_stats.json").read_text())
    assert stats["teacher"].startswith("self(iter_0)@50/step")
    assert stats["steps_accepted"] + stats["steps_rejected"] >= 4 * 12


@pytest.mark.parametrize("rule", ["dpo", "kto"])
def test_preference_rules_train(tmp_path, rule: str) -> None:
    config = load_config(_config(tmp_path, rule, loop={"iterations": 1}, train={"rule": rule}))
    LeapRun(config).run()
    run = config.run_dir
    rows = list(read_jsonl(run / "iter_1" / "train" / f"{rule}.jsonl"))
    assert rows
    if rule == "dpo":
        assert all({"prompt", "chosen", "rejected"} <= set(r) for r in rows)
    else:
        assert {r["label"] for r in rows} == {True, False}
    metrics = json.loads((run / "iter_1" / "adapter" / "train_metrics.json").read_text())
    assert metrics["rule"] == rule and metrics["steps"] == 2


def test_leap_run_cli_prints_the_table(tmp_path) -> None:
    path = _config(tmp_path, "cli", loop={"iterations": 1})
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "best iteration" in result.output and "BC (0)" in result.output
    again = CliRunner().invoke(app, ["run", str(path)])  # everything is done: only reads
    assert again.exit_code == 0 and "BC (0)" in again.output


def test_matched_bc_and_paired_comparisons(tmp_path) -> None:
    """The run compares the tested LEAP iteration with BC and with a BC given the same budget
    (samples and optimizer steps), paired on the same test tasks, and prints intervals."""
    path = _config(tmp_path, "matched", loop={"iterations": 1, "matched_bc": True}, env={"n_test": 4})
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    config = load_config(path)
    run, layout = config.run_dir, config.layout
    summary = json.loads((run / "summary.json").read_text())
    leap = summary["best_leap_iteration"]
    assert leap == 1
    budget = len(list(read_jsonl(layout.train_file(1, "sft"))))  # D_0 ∪ D_1
    matched = list(read_jsonl(layout.matched_bc / "samples.jsonl"))
    assert len(matched) == budget and {s["iteration"] for s in matched} == {0}
    demos = {s["episode_id"] for s in read_jsonl(layout.samples(0))}
    assert len({s["episode_id"] for s in matched}) > len(demos)
    trained = json.loads((layout.matched_bc / "adapter" / "train_metrics.json").read_text())
    steps = [json.loads((layout.adapter(k) / "train_metrics.json").read_text())["steps"] for k in (0, 1)]
    assert trained["steps"] == sum(steps) and trained["init_adapter"] is None
    tested = {e["task_id"] for e in read_jsonl(layout.matched_bc_test() / "episodes.jsonl")}
    assert tested == {e["task_id"] for e in read_jsonl(layout.test(leap) / "episodes.jsonl")}
    comparisons = summary["comparisons"]
    # and with the teacher without its privilege acting as the agent (the searcher), not the planner
    assert set(comparisons) == {"bc", "matched_bc", "reference_searcher"}
    assert comparisons["reference_searcher"]["against"] == "searcher (not privileged)"
    assert "searcher (reference)" in result.output and "planner (reference)" in result.output
    for c in comparisons.values():
        assert c["n"] == 4 and c["low"] <= c["difference"] <= c["high"]
    # each comparison keeps the name of its baseline (its success rate is "baseline")
    assert comparisons["bc"]["against"] == "BC (iteration 0)"
    assert comparisons["matched_bc"]["against"] == summary["matched_bc"]["label"]
    assert "LEAP iteration 1 − BC (iteration 0) on test" in result.output
    assert f"LEAP iteration 1 − {summary['matched_bc']['label']} on test" in result.output
    logged = [r for r in read_jsonl(layout.metrics) if r["stage"] == "compare"]
    assert sorted(r["against"] for r in logged) == sorted(c["against"] for c in comparisons.values())
    assert summary["matched_bc"]["n_episodes"] == 4
    assert "BC, matched" in result.output and "paired tasks" in result.output and "n=4" in result.output
    report = (run / "report.md").read_text()
    assert "BC, budget-matched" in report and "95 % CI" in report and "paired on the same tasks" in report


def test_matched_bc_from_bc_continues_bcs_adapter_for_leaps_further_steps(tmp_path) -> None:
    """``loop.matched_bc_init: bc``: the budget-matched BC starts where LEAP starts (BC's adapter)
    and trains only the steps LEAP trained after BC, on as many samples as LEAP's union, so its
    budget in all (BC's steps included) equals LEAP's."""
    path = _config(
        tmp_path,
        "matched-bc",
        loop={"iterations": 1, "matched_bc": True, "matched_bc_init": "bc"},
        train={**TINY["train"], "bc_max_steps": 3, "max_steps": 2},
    )
    assert LeapRun(load_config(path)).run()["matched_bc"] is not None
    layout = load_config(path).layout
    trained = json.loads((layout.matched_bc / "adapter" / "train_metrics.json").read_text())
    assert trained["steps"] == 2 and trained["init_adapter"] == str(layout.adapter(0))
    row = next(r for r in read_jsonl(layout.metrics) if r["stage"] == "matched_bc_train")
    assert row["steps"] == 3 + 2 and row["trained_steps"] == 2 and row["init"] == "bc"
    assert row["samples"] == len(list(read_jsonl(layout.train_file(1, "sft"))))
    summary = json.loads(layout.summary.read_text())
    assert "5 steps" in summary["matched_bc"]["label"]


def test_every_iteration_is_tested_when_asked(tmp_path) -> None:
    """``loop.test_iterations: all`` tests every iteration on the test split, not only BC and the
    best on validation; it may be turned on when a run resumes (it trains nothing)."""
    path = _config(
        tmp_path, "all", loop={"iterations": 2, "reference_experts": False, "reference_zero_shot": False}
    )
    summary = LeapRun(load_config(path)).run()
    layout = load_config(path).layout
    best = {0, summary["best_leap_iteration"]}
    assert set(layout.tests()) == best
    summary = LeapRun(load_config(path, {"loop.test_iterations": "all"})).run()
    assert set(layout.tests()) == {0, 1, 2}
    assert all(row["test"]["n_episodes"] == 3 for row in summary["iterations"])
    assert summary["comparisons"]["bc"]["leap_iteration"] == summary["best_leap_iteration"]


def test_takeover_corrections_train_on_the_teachers_whole_recovery(tmp_path) -> None:
    """With loop.corrections: takeover each failed episode is finished by the teacher from the
    student's first error; the samples are the teacher's steps on that history, and the
    finished episodes are kept beside them."""
    prompt = {"style": "student", "layout": "turns", "history_steps": 12, "list_actions": False}
    sections = {
        "student": {"prompt": prompt},
        "loop": {"iterations": 1, "corrections": "takeover"},
        "train": {"max_length": 4096},
    }
    config = load_config(_config(tmp_path, "takeover", **sections))
    LeapRun(config).run()
    layout = config.layout
    student = {e["episode_id"]: e for e in read_jsonl(layout.iteration(1) / "rollout" / "episodes.jsonl")}
    finished = list(read_jsonl(layout.takeovers(1)))
    assert len(finished) == 3  # a random student fails every rollout
    samples = list(read_jsonl(layout.samples(1)))
    for episode in finished:
        own = student[episode["episode_id"].removesuffix("+takeover")]
        start = next(t for t, s in enumerate(episode["steps"]) if s["raw"] == "" and s["prompt_sha"] is None)
        assert episode["steps"][:start] == own["steps"][:start]
        # the teacher at 50 % finishes the task unless the horizon (12) comes first
        assert episode["success"] or len(episode["steps"]) == 12
        mine = sorted(
            (s for s in samples if s["episode_id"] == episode["episode_id"]), key=lambda s: s["step"]
        )
        assert [s["step"] for s in mine] == list(range(start, len(episode["steps"])))
        assert [s["completion"].rsplit("ACTION: ", 1)[1] for s in mine] == [
            s["action"] for s in episode["steps"][start:]
        ]
        assert mine[0]["rejected"] == own["steps"][start]["raw"] and mine[-1]["rejected"] is None
    assert any(e["success"] for e in finished)
    row = next(r for r in read_jsonl(layout.metrics) if r["stage"] == "select")
    assert row["takeovers"] == 3 and row["samples"] == len(samples)

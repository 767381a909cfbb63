"""The structure the rest stands on: environment specs (lazy, checked when a config is loaded),
one meaning per privilege level, the run directory's layout, and settings used as config."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from leap.agents import StudentSettings
from leap.config import ConfigError, parse_config
from leap.envs import env_spec, make_env
from leap.layout import RunLayout
from leap.privilege import LEVELS, MEANING, check_level
from leap.rollout import run_episodes
from leap.teachers.llm import LLMTeacher
from leap.teachers.replay import replay
from leap.train import TrainSettings


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"env": {"name": "intercode-bash"}, "teacher": {"privilege": 25}},
            "teacher.privilege: intercode-bash's programmatic teacher has no privilege level 25; "
            "it supports 50, 75, 100",
        ),
        (
            {"env": {"name": "intercode-bash"}, "teacher": {"privilege": 50}, "demos": {"privilege": 0}},
            "demos.privilege: intercode-bash's programmatic teacher has no privilege level 0",
        ),
        ({"demos": {"expert": "oracle"}}, "demos.expert: household has no expert 'oracle'"),
        ({"env": {"name": "no-such-env"}}, "env.name: unknown environment 'no-such-env'"),
    ],
)
def test_a_config_is_checked_against_its_environment_when_loaded(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "x", **data}, "c.yaml")
    assert str(info.value).startswith(f"c.yaml: {message}")
    assert "\n" not in str(info.value)


def test_an_llm_teacher_may_use_any_level_on_any_environment() -> None:
    config = parse_config(
        {
            "name": "x",
            "env": {"name": "intercode-bash"},
            "teacher": {"kind": "llm", "privilege": 25},
            "demos": {"expert": "gold"},
        }
    )
    assert config.teacher.privilege == 25


def test_household_needs_no_other_environment() -> None:
    """Listing the environments and running household imports neither ALFWorld nor WebShop."""
    code = textwrap.dedent(
        """
        import sys
        from leap.config import parse_config
        from leap.envs import list_envs, make_env, env_spec
        from leap.rollout import run_episodes
        assert set(list_envs()) >= {"household", "alfworld", "webshop", "intercode-bash"}
        assert env_spec("webshop").experts and env_spec("alfworld").teacher
        parse_config({"name": "x"})
        env = make_env("household")
        expert = env_spec("household").expert("planner")
        eps = run_episodes(lambda: make_env("household"), env.task_ids("valid")[:3], expert,
                           show_progress=False)
        assert all(e.success for e in eps)
        loaded = [m for m in sys.modules if m.split(".")[0] in ("alfworld", "textworld", "bm25s", "Stemmer")
                  or m.startswith(("leap.envs.webshop", "leap.envs.alfworld", "leap.envs.intercode"))]
        print(",".join(loaded))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_privilege_levels_share_one_meaning() -> None:
    assert set(MEANING) == set(LEVELS)
    reads = [MEANING[k].reads for k in LEVELS]
    assert reads == ["nothing", "requirements", "everything", "everything", "everything"]
    with pytest.raises(ValueError, match="has no privilege level 30; it supports 0, 25, 50, 75, 100"):
        check_level(30)
    for name in ("household", "webshop"):
        spec = env_spec(name)
        assert spec.teacher_levels == LEVELS
        assert [spec.teacher_policy(k).privilege for k in LEVELS] == list(LEVELS)


def test_the_llm_teacher_reads_the_share_of_its_level(tiny_model) -> None:
    """At 0 no privileged fact reaches the prompt, at 25 only the requirements, at 50 all."""
    env = make_env("household")
    task = env.task_ids("valid")[2]
    searcher = env_spec("household").expert("searcher")
    episode = run_episodes(lambda: make_env("household"), [task], searcher, horizon=3, show_progress=False)[0]
    views = replay(make_env("household"), episode)
    state = views[0].privileged
    assert state is not None and state.summary and state.summary in state.text
    hidden = [o["location"] for o in state.data["objects"] if o["location"] != "in your hand"]
    assert hidden and all(h not in state.summary for h in hidden)
    prompts = {}
    for level in (0, 25, 50):
        teacher = LLMTeacher(tiny_model, privilege=level)
        prompts[level] = teacher._trajectory_prompt(episode, views)[1]["content"]
    assert state.summary not in prompts[0] and "Optimal remaining actions" not in prompts[0]
    assert state.summary in prompts[25] and "Optimal remaining actions" not in prompts[25]
    assert state.text in prompts[50]


def test_settings_are_the_config_sections() -> None:
    config = parse_config(
        {
            "name": "x",
            "student": {"prompt": {"memory": "places"}, "batch_size": 4},
            "train": {"bc_max_steps": 7},
        }
    )
    assert isinstance(config.student, StudentSettings) and isinstance(config.train, TrainSettings)
    assert config.student.prompt.style == "student" and config.student.prompt.memory == "places"
    bc, later = config.train.for_iteration(0), config.train.for_iteration(1)
    assert (bc.rule, bc.max_steps) == ("sft", 7) and later is config.train
    dpo = parse_config({"name": "x", "train": {"rule": "dpo", "max_steps": 3}}).train
    assert dpo.for_iteration(0).rule == "sft" and dpo.for_iteration(0).max_steps == 3
    assert dpo.for_iteration(2).rule == "dpo"


def test_the_layout_finds_what_a_run_wrote(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    for path in (
        layout.samples(0),
        layout.adapter(0) / "adapter_config.json",
        layout.valid(0) / "summary.json",
        layout.rollout(1) / "episodes.jsonl",
        layout.test(0) / "summary.json",
        layout.test(12) / "summary.json",
        layout.reference("planner") / "summary.json",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({}))
    assert layout.bc_done() and not layout.adapter_done(1)
    assert layout.iterations() == [0, 1]
    assert list(layout.tests()) == [0, 12]
    assert list(layout.references()) == ["planner"]
    assert layout.train_file(2, "dpo") == tmp_path / "run" / "iter_2" / "train" / "dpo.jsonl"

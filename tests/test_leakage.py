"""The leakage audit on hand-written cases, and the household teacher's privilege levels."""

from __future__ import annotations

import re

import pytest

from leap.envs import ActionSpace, PrivilegedState, Secret, env_spec, make_env
from leap.policy import AgentView, Turn
from leap.rollout import run_episodes
from leap.teachers import ProgrammaticTeacher
from leap.teachers.leakage import audit, find_leaks

MUG = (
    Secret(r"\bmug 2\b", evidence="mug 2", label="mug 2 (object id)"),
    Secret(r"\bmug\b[^.;]*\bcabinet 3\b", evidence="mug 2", label="mug 2 is at cabinet 3"),
)
GOLD = (Secret(re.escape("find . -name '*.txt'"), label="gold command"),)


@pytest.mark.parametrize(
    ("reason", "observed", "leaks"),
    [
        ("The mug 2 is in the cabinet 3.", "", ["mug 2 (object id)", "mug 2 is at cabinet 3"]),
        ("I expect the mug at the cabinet 3.", "", ["mug 2 is at cabinet 3"]),
        ("A mug is often found in a cabinet. Next I check the cabinet 3.", "", []),
        ("I check the cabinet 3.", "", []),
        ("I saw the mug 2 at the cabinet 3.", "you open the cabinet 3. in it, you see a mug 2.", []),
        ("Take the MUG 2 now.", "", ["mug 2 (object id)"]),
        ("I need a mug; cabinet 3 first", "", []),  # separate clauses
        ("I need a mug from cabinet 3 first", "", ["mug 2 is at cabinet 3"]),
        ("The mug 12 is elsewhere.", "", []),
        ("", "", []),
    ],
)
def test_find_leaks(reason: str, observed: str, leaks: list[str]) -> None:
    assert find_leaks(reason, MUG, observed) == leaks


def test_gold_command_always_leaks() -> None:
    assert find_leaks("Run find . -name '*.txt' to list them.", GOLD, "anything") == ["gold command"]
    assert find_leaks("Use find with a name pattern.", GOLD, "") == []


def test_audit_uses_the_views_history() -> None:
    state = PrivilegedState("secret", {}, MUG)
    blind = AgentView("e", "put a mug in shelf.", "You arrive at cabinet 1.", ActionSpace(), (), state)
    saw = AgentView(
        "e",
        "put a mug in shelf.",
        "You arrive at cabinet 1.",
        ActionSpace(),
        (Turn("You open the cabinet 3. In it, you see a mug 2.", "", "open cabinet 3"),),
        state,
    )
    assert audit("The mug 2 is in the cabinet 3.", blind)
    assert audit("The mug 2 is in the cabinet 3.", saw) == []
    assert audit("The mug 2 is in the cabinet 3.", AgentView("e", "t", "o", ActionSpace())) == []


def _leak_rate(privilege: int) -> float:
    searcher = env_spec("household").expert("searcher")
    episodes = run_episodes(
        lambda: make_env("household"),
        [f"train/{i:04d}" for i in range(30)],
        searcher,
        horizon=4,
        show_progress=False,
    )
    corrections = ProgrammaticTeacher(env_spec("household").teacher_policy(privilege)).correct(
        episodes, lambda: make_env("household")
    )
    steps = [s for c in corrections for s in c.steps]
    assert len(steps) == sum(e.n_actions for e in episodes)  # every step corrected and accepted
    return sum(bool(s.leaks) for s in steps) / len(steps)


def test_household_teacher_leaks_only_at_high_privilege() -> None:
    rates = {p: _leak_rate(p) for p in (0, 25, 50, 75, 100)}
    assert rates[0] == rates[25] == rates[50] == 0.0
    assert rates[100] >= rates[75] > 0.1


def test_programmatic_teacher_drops_leaking_steps_when_asked() -> None:
    """``teacher.leakage: drop`` applies to the programmatic teacher too: a flagged step is
    rejected (counted as a leak), every other step is kept as with ``flag``."""
    searcher = env_spec("household").expert("searcher")
    episodes = run_episodes(
        lambda: make_env("household"),
        [f"train/{i:04d}" for i in range(20)],
        searcher,
        horizon=4,
        show_progress=False,
    )
    policy = env_spec("household").teacher_policy(100)
    flagged = ProgrammaticTeacher(policy).correct(episodes, lambda: make_env("household"))
    dropped = ProgrammaticTeacher(policy, drop_leaks=True).correct(episodes, lambda: make_env("household"))
    for kept_all, kept_clean in zip(flagged, dropped, strict=True):
        leaking = [s for s in kept_all.steps if s.leaks]
        assert kept_clean.steps == [s for s in kept_all.steps if not s.leaks]
        assert kept_clean.rejections["leak"] == len(leaking)
    assert sum(c.rejections["leak"] for c in dropped) > 0


def test_the_config_passes_leakage_drop_to_the_programmatic_teacher(tmp_path) -> None:
    from leap.builders import RunParts
    from leap.config import load_config

    for leakage, expected in (("flag", False), ("drop", True)):
        config = load_config(
            "configs/household-demo.yaml", {"teacher.leakage": leakage, "output_dir": str(tmp_path)}
        )
        teacher = RunParts(config, config.layout).teacher(1)
        assert isinstance(teacher, ProgrammaticTeacher) and teacher.drop_leaks is expected

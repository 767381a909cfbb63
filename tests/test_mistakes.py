"""What policies get wrong (leap.envs.alfred.mistakes), in summaries and in `leap mistakes`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from leap.cli import app
from leap.envs.alfred.mistakes import KINDS, count_mistakes
from leap.envs.registry import env_spec
from leap.evaluate import evaluate
from leap.rollout import Episode, StepRecord

ROOM = (
    "You are in the middle of a room. "
    "Looking quickly around you, you see a cabinet 1, a cabinet 2, and a shelf 1."
)


def _step(t: int, observation: str, action: str, reason: str = "", valid: bool = True, done: bool = False):
    return StepRecord(t, observation, {}, action, reason, "", None, valid, 0.0, done, {})


def _episode(steps: list[StepRecord], success: bool = False) -> Episode:
    return Episode("e", "household", "train/0000", "pick", "put a mug on shelf.", "student", steps, success)


def test_each_kind_of_mistake_is_counted_where_it_happens() -> None:
    steps = [
        _step(0, ROOM, "go to cabinet 1", "A mug is often found on a cabinet; I check the cabinet 1."),
        # the room has two cabinets: counting on to a third is no such place
        _step(
            1,
            "You arrive at cabinet 1. On the cabinet 1, you see a cup 1.",
            "go to cabinet 2",
            "I check the cabinet 3.",
        ),
        # back where it has been, holding nothing as before: a revisit; the mug 3 was never shown
        _step(
            2,
            "You arrive at cabinet 2. On the cabinet 2, you see a mug 1.",
            "go to cabinet 1",
            "I saw the mug 3.",
        ),
        _step(3, "You arrive at cabinet 1. On the cabinet 1, you see a cup 1.", "take cup 1 from cabinet 1"),
        # holding the cup, cabinet 2 is a new visit; then the wrong object goes down
        _step(4, "You pick up the cup 1 from the cabinet 1.", "go to cabinet 2"),
        _step(5, "You arrive at cabinet 2.", "move cup 1 to cabinet 2"),
        _step(
            6,
            "You move the cup 1 to the cabinet 2.",
            "take mug 1 from cabinet 2",
            "I saw a mug 1; I take it.",
        ),
        _step(7, "You pick up the mug 1 from the cabinet 2.", "move mug 1 to cabinet 2"),
        _step(8, "You move the mug 1 to the cabinet 2.", "fly away", valid=False),
    ]
    found = count_mistakes(_episode(steps))
    assert list(found) == list(KINDS)
    assert found == {
        "revisit": 1,
        "no_such_place": 1,
        "unseen_object": 1,
        "wrong_object": 1,
        "misplaced": 1,  # the mug put on a cabinet, not the shelf; the cup does not count
        "invalid": 1,
        "out_of_steps": 1,
    }
    # a solved episode, or one the environment ended, did not run out of steps
    assert count_mistakes(_episode(steps, success=True))["out_of_steps"] == 0
    steps[-1] = _step(8, steps[-1].observation, "look", done=True)
    assert count_mistakes(_episode(steps))["out_of_steps"] == 0


def test_evaluations_count_mistakes_and_leap_mistakes_prints_them(tmp_path) -> None:
    """household's spec names its counter; an evaluation's summary carries the counts, and
    `leap mistakes` reads them back from the episodes (a run directory or a rollout directory)."""
    assert env_spec("household").mistake_counter() is count_mistakes
    assert env_spec("webshop").mistake_counter() is None
    assert env_spec("household").expert_privileged("planner") and not env_spec("household").expert_privileged(
        "searcher"
    )
    out = tmp_path / "searcher"
    options = {"task_types": ["pick", "look"]}
    summary = evaluate(
        "household",
        "valid",
        env_spec("household").expert("searcher"),
        n=40,
        out_dir=out,
        horizon=6,
        env_options=options,
        show_progress=False,
    )
    counts = summary["mistakes"]
    failed = summary["n_episodes"] - summary["n_successes"]
    assert failed > 0 and counts["out_of_steps"] == {"steps": failed, "episodes": failed}
    assert counts["revisit"]["steps"] == counts["unseen_object"]["steps"] == 0  # the searcher does neither
    result = CliRunner().invoke(app, ["mistakes", str(out), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "revisit" in result.output and f"{failed} ({failed})" in result.output
    assert json.loads((tmp_path / "m.json").read_text())["searcher"]["mistakes"] == counts
    missing = CliRunner().invoke(app, ["mistakes", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no such file" in missing.output

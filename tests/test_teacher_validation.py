"""Teacher replies: JSON repair, alignment, partial acceptance, rejection causes. No crashes."""

from __future__ import annotations

import json

import pytest

from leap.envs import ActionSpace, FreeFormRule
from leap.teachers.validation import extract_json, validate_step, validate_trajectory

SPACES = [ActionSpace(("go to cabinet 1", "go to shelf 1", "look"))] * 3
GOOD = [
    {"t": 0, "reason": "a", "action": "go to cabinet 1"},
    {"t": 1, "reason": "b", "action": "look"},
    {"t": 2, "reason": "c", "action": "go to shelf 1"},
]


def _j(steps: list, **extra: object) -> str:
    return json.dumps({"summary": "s", "steps": steps, **extra})


# (reply, accepted steps, rejection counts)
CASES = [
    (_j(GOOD), [0, 1, 2], {}),
    ("```json\n" + _j(GOOD) + "\n```", [0, 1, 2], {}),
    ("Here is my correction:\n" + _j(GOOD) + "\nHope it helps!", [0, 1, 2], {}),
    (_j(GOOD)[:-3], [0, 1, 2], {}),  # truncated: repaired
    (_j(GOOD)[: _j(GOOD).index('{"t": 2')], [0, 1], {"missing_step": 1}),  # cut mid-list
    (_j(GOOD).replace('"', "'"), [0, 1, 2], {}),  # single quotes
    (_j(GOOD).replace("}]", "},]"), [0, 1, 2], {}),  # trailing comma
    (json.dumps([{"reason": "a", "action": "look"}] * 3), [0, 1, 2], {}),  # bare list, aligned by position
    (json.dumps([{"reason": "a", "action": "look"}] * 2), [], {"length_mismatch": 3}),
    (json.dumps([{"reason": "a", "action": "look"}] * 4), [], {"length_mismatch": 3}),
    (_j(GOOD[:2]), [0, 1], {"missing_step": 1}),
    (_j([*GOOD, {"t": 3, "reason": "x", "action": "look"}]), [0, 1, 2], {"bad_timestep": 1}),
    (_j([*GOOD, {"t": 1, "reason": "x", "action": "look"}]), [0, 1, 2], {"duplicate_step": 1}),
    (_j([{**GOOD[0], "action": "fly away"}, *GOOD[1:]]), [1, 2], {"inadmissible_action": 1}),
    (_j([{**GOOD[0], "action": ""}, *GOOD[1:]]), [1, 2], {"empty_action": 1}),
    (_j([{**GOOD[0], "action": "Go To Cabinet 1."}, *GOOD[1:]]), [0, 1, 2], {}),  # normalised match
    (_j([{**GOOD[0], "t": "0"}, *GOOD[1:]]), [0, 1, 2], {}),  # string timestep
    (_j([{**GOOD[0], "t": -1}, *GOOD[1:]]), [1, 2], {"bad_timestep": 1, "missing_step": 1}),
    (_j([{**GOOD[0], "t": "first"}, *GOOD[1:]]), [1, 2], {"bad_timestep": 1, "missing_step": 1}),
    (_j([{"t": 0}, *GOOD[1:]]), [1, 2], {"empty_action": 1}),
    (_j(["not an object", *GOOD]), [0, 1, 2], {}),
    (_j([]), [], {"no_steps": 3}),
    (json.dumps({"summary": "only a summary"}), [], {"no_steps": 3}),
    (json.dumps({"steps": "go to cabinet 1"}), [], {"no_steps": 3}),
    ("", [], {"empty_reply": 3}),
    ("   \n ", [], {"empty_reply": 3}),
    ("I think the student should look around more.", [], {"no_json": 3}),
    ("REASON: look\nACTION: look", [], {"no_json": 3}),
    ("{", [], {"no_json": 3}),
    ("[]", [], {"no_steps": 3}),
    ("null", [], {"no_json": 3}),
    ("42", [], {"no_json": 3}),
    (_j([{**g, "action": "go to cabinet 9"} for g in GOOD]), [], {"inadmissible_action": 3}),
    (
        _j([{"step": 0, "reason": "a", "action": "look"}, {"step": 2, "reason": "b", "action": "look"}]),
        [0, 2],
        {"missing_step": 1},
    ),
]


def test_there_are_at_least_thirty_malformed_cases() -> None:
    assert sum(1 for _, accepted, causes in CASES if causes or len(accepted) < 3) >= 20
    assert len(CASES) >= 30


@pytest.mark.parametrize(("reply", "accepted", "causes"), CASES)
def test_trajectory_validation(reply: str, accepted: list[int], causes: dict[str, int]) -> None:
    result = validate_trajectory(reply, SPACES)
    assert sorted(result.steps) == accepted
    assert dict(result.rejections) == causes
    for _, action in result.steps.values():
        assert action in SPACES[0].choices


def test_summary_and_reasons_are_kept() -> None:
    result = validate_trajectory(_j(GOOD), SPACES)
    assert result.summary == "s"
    assert result.steps[1] == ("b", "look")


def test_free_form_actions_are_kept_not_dropped() -> None:
    spaces = [ActionSpace(("click[buy now]",), FreeFormRule(r"search\[.+\]", "search[QUERY]"))]
    result = validate_trajectory(_j([{"t": 0, "reason": "r", "action": "search[red shoes size 9]"}]), spaces)
    assert result.steps == {0: ("r", "search[red shoes size 9]")}


@pytest.mark.parametrize(
    ("reply", "ok", "cause"),
    [
        ("REASON: go look\nACTION: look", True, None),
        ("ACTION: look", True, None),
        ("REASON: only thinking", False, "empty_action"),
        ("", False, "empty_reply"),
        ("REASON: x\nACTION: dance", False, "inadmissible_action"),
    ],
)
def test_step_validation(reply: str, ok: bool, cause: str | None) -> None:
    result = validate_step(reply, SPACES[0], 4)
    assert result.usable == ok
    assert (list(result.rejections) == [cause]) if cause else not result.rejections
    if ok:
        assert 4 in result.steps


def test_extract_json_never_raises() -> None:
    for text in ["{{{{", "[[[", "{'a': }", '{"a": [1, 2', "```json\n```", "}{", "\x00{"]:
        extract_json(text)

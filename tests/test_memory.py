"""Memory notes in the student's prompt: built from the agent's own observations and actions."""

from __future__ import annotations

import pytest
from shared_data import needs_data

from leap.agents import PromptSettings, render_prompt
from leap.config import ConfigError, parse_config
from leap.data import template_sha
from leap.envs import make_env
from leap.memory import room_places, unvisited_and_done, unvisited_places
from leap.policy import AgentView, Turn

ROOM = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, "
    "a countertop 1, a drawer 1, a drawer 2, a fridge 1, and a sinkbasin 1.\n\n"
    "Your task is to: put a cool mug in cabinet."
)
TURNS = PromptSettings(style="student", layout="turns", history_steps=20, list_actions=False, memory="places")


def test_room_places_in_the_room_order() -> None:
    assert room_places(ROOM) == [
        "cabinet 1",
        "cabinet 2",
        "countertop 1",
        "drawer 1",
        "drawer 2",
        "fridge 1",
        "sinkbasin 1",
    ]
    assert room_places("Nothing happens.") == []


def test_unvisited_places_after_each_move() -> None:
    assert unvisited_places(ROOM, []) == []
    moves = ["go to cabinet 1"]
    expected = ["cabinet 2", "countertop 1", "drawer 1", "fridge 1", "sinkbasin 1"]
    assert unvisited_places(ROOM, moves) == expected
    moves += ["open cabinet 1"]
    assert unvisited_places(ROOM, moves) == [], "the note follows moves only"
    moves += ["go to drawer 1", "go to cabinet 2"]
    assert unvisited_places(ROOM, moves) == ["countertop 1", "drawer 2", "fridge 1", "sinkbasin 1"]
    moves += ["go to drawer 2", "go to countertop 1", "go to fridge 1", "go to sinkbasin 1"]
    assert unvisited_places(ROOM, moves) == []


def _searched_view(task_id: str, n_steps: int) -> tuple[list[str], AgentView]:
    """A household task after ``n_steps`` moves of a walk through the room's places."""
    env = make_env("household")
    obs = env.reset(task_id).observation
    first, turns = obs, []
    for place in room_places(obs)[:n_steps]:
        turns.append(Turn(obs, "r", f"go to {place}"))
        obs = env.step(f"go to {place}").observation
    return room_places(first), AgentView(task_id, env.task, obs, env.action_space(), tuple(turns))


def test_places_done_says_where_a_kind_ends() -> None:
    """``places_done``: the note of ``places``, and "no cabinet left" right after the move to the
    last unvisited cabinet (not before, and not again on later moves)."""
    moves = ["go to cabinet 1"]
    assert unvisited_and_done(ROOM, moves) == unvisited_places(ROOM, moves)
    moves += ["open cabinet 1", "go to cabinet 2"]
    assert unvisited_and_done(ROOM, moves) == [*unvisited_places(ROOM, moves), "no cabinet left"]
    moves += ["open cabinet 2"]
    assert unvisited_and_done(ROOM, moves) == []  # no move, no note
    moves += ["go to drawer 1"]
    assert unvisited_and_done(ROOM, moves) == ["countertop 1", "drawer 2", "fridge 1", "sinkbasin 1"]
    moves += ["go to countertop 1"]  # the only countertop
    assert unvisited_and_done(ROOM, moves)[-1] == "no countertop left"
    settings = TURNS.model_copy(update={"memory": "places_done"})
    assert template_sha(settings) != template_sha(TURNS)  # samples record which note they saw


def test_household_transcript_carries_the_note_and_still_grows_by_one_turn() -> None:
    places, view = _searched_view("test_ood/0000", 4)
    messages = render_prompt(view, TURNS)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert "Unvisited" not in users[0], "the first turn lists the room itself"
    kinds = {p.rpartition(" ")[0] for p in places[4:]}
    last_note = users[-1].splitlines()[-1]
    assert last_note.startswith("Unvisited: ") and last_note.endswith(".")
    noted = last_note.removeprefix("Unvisited: ").removesuffix(".").split(", ")
    assert not set(noted) & set(places[:4]) and {p.rpartition(" ")[0] for p in noted} == kinds
    # the note is rendered once per turn and never rewritten: prompts extend each other, which
    # prefix caching and whole-episode training rely on
    _, shorter = _searched_view("test_ood/0000", 3)
    assert render_prompt(shorter, TURNS) == messages[:-2]
    # the single layout shows the note for the current step
    single = render_prompt(view, PromptSettings(style="student", list_actions=False, memory="places"))
    assert single[-1]["content"].endswith(last_note)
    # without memory the prompts are those of before
    plain = PromptSettings(style="student", layout="turns", history_steps=20, list_actions=False)
    assert all("Unvisited" not in m["content"] for m in render_prompt(view, plain))
    assert template_sha(plain) != template_sha(TURNS)


@needs_data("alfworld")
def test_alfworld_rooms_parse() -> None:
    env = make_env("alfworld")
    try:
        first = env.reset(env.task_ids("valid_seen")[0]).observation
        places = room_places(first)
        assert len(places) >= 5
        choices = env.action_space().choices
        assert all(f"go to {p}" in choices for p in places)
    finally:
        env.close()


def test_config_key_and_bad_value() -> None:
    def config(memory: str) -> dict:
        return {"name": "m", "env": {"name": "household"}, "student": {"prompt": {"memory": memory}}}

    assert parse_config(config("places")).student.prompt.memory == "places"
    with pytest.raises(ConfigError, match=r"student\.prompt\.memory"):
        parse_config(config("all"))
    with pytest.raises(ValueError, match="unknown memory note"):
        PromptSettings(memory="all")

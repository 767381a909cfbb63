"""Memory notes for the student's prompt, built only from what the agent itself has observed.

A small student loses track of where it has already been over a long transcript and walks back
to the same places. A memory note restates part of its own history in a form it can copy from:
it is realizable by construction (a function of the first observation and the agent's own past
actions) and never reads the privileged state.

- ``none``: no note.
- ``places``: for rooms described as ALFWorld does ("... you see a cabinet 1, a cabinet 2, and a
  fridge 1."), after each move, the places not visited yet: per kind of place, the first one in
  the room's own order ("Unvisited: cabinet 2, fridge 1."). One per kind keeps the note short;
  it lists, in effect, the next place to search of every kind.
- ``places_done``: ``places``, and after the move that visits the last place of a kind, "no
  cabinet left" at the note's end: a small student counts on past the last one ("cabinet 4" in a
  room with three) and walks back and forth among those it has seen; the note says where a kind
  ends where the decision is made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from leap.envs.alfred.text import parse_listing, type_of

_ROOM = re.compile(r"you see (?P<places>.+?)\.\s*(?:\n|$)")
_MOVE = "go to "


def room_places(first_observation: str) -> list[str]:
    """The places a room description lists, in its order ([] when it lists none)."""
    m = _ROOM.search(first_observation)
    if not m:
        return []
    return parse_listing(m.group("places"))


def unvisited_places(first_observation: str, actions: Sequence[str]) -> list[str]:
    """After a move, the first unvisited place of each kind; otherwise nothing."""
    if not actions or not actions[-1].startswith(_MOVE):
        return []
    visited = {a.removeprefix(_MOVE) for a in actions if a.startswith(_MOVE)}
    first_of_kind: dict[str, str] = {}
    for place in room_places(first_observation):
        kind = type_of(place)
        if place not in visited and kind not in first_of_kind:
            first_of_kind[kind] = place
    return list(first_of_kind.values())


def unvisited_and_done(first_observation: str, actions: Sequence[str]) -> list[str]:
    """``places``, and "no <kind> left" when the move just visited the last unvisited place of
    its kind (the room has no more of them: the next place to search is of another kind)."""
    items = unvisited_places(first_observation, actions)
    if not items:
        return items
    kind = type_of(actions[-1].removeprefix(_MOVE))
    places = room_places(first_observation)
    visited = {a.removeprefix(_MOVE) for a in actions if a.startswith(_MOVE)}
    if any(type_of(p) == kind for p in places) and all(p in visited for p in places if type_of(p) == kind):
        items.append(f"no {kind} left")
    return items


#: memory kind -> function of (first observation, the agent's actions so far) -> note items
MEMORY_NOTES: dict[str, Callable[[str, Sequence[str]], list[str]] | None] = {
    "none": None,
    "places": unvisited_places,
    "places_done": unvisited_and_done,
}


def memory_items(kind: str, first_observation: str, actions: Sequence[str]) -> list[str]:
    note = MEMORY_NOTES[kind]
    return [] if note is None else note(first_observation, actions)

"""ALFRED-style text, shared by household and ALFWorld: object names, listings and task texts.

Both worlds name things as ALFWorld does ("cabinet 3", "a mug 1, and a cup 2") and phrase tasks
the same way, so one parser reads what a non-privileged agent can know from either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from leap.envs.alfred.catalog import ADJECTIVE, TRANSFORM_OF_TASK, Transform, preposition

#: object state flag set by each transform
FLAG: dict[Transform, str] = {"clean": "clean", "heat": "hot", "cool": "cool"}


def type_of(name: str) -> str:
    """'cabinet 3' -> 'cabinet'."""
    return name.rsplit(" ", 1)[0]


def listing(names: Iterable[str]) -> str:
    """ALFWorld's enumeration: 'a mug 1', 'a mug 1, and a cup 2', 'a x, a y, and a z'."""
    items = [f"a {n}" for n in names]
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


def parse_listing(text: str) -> list[str]:
    """The names of an enumeration as :func:`listing` (and ALFWorld) writes it."""
    if text == "nothing":
        return []
    return [re.sub(r"^(?:and )?an? ", "", part.strip()) for part in text.split(", ")]


@dataclass(frozen=True)
class Goal:
    task_type: str
    object_type: str
    #: receptacle type the objects must end up in (None for look tasks)
    target_type: str | None
    count: int = 1

    @property
    def transform(self) -> Transform | None:
        return TRANSFORM_OF_TASK.get(self.task_type)

    @property
    def flag(self) -> str | None:
        t = self.transform
        return None if t is None else FLAG[t]


def task_text(goal: Goal, phrasing: int) -> str:
    """The instruction, in one of two ALFWorld-like phrasings."""
    obj, target = goal.object_type, goal.target_type
    if goal.task_type == "look":
        return (f"look at {obj} under the desklamp.", f"examine the {obj} with the desklamp.")[phrasing]
    assert target is not None
    prep = preposition(target)
    if goal.task_type == "pick":
        return (f"put a {obj} {prep} {target}.", f"put some {obj} {prep} {target}.")[phrasing]
    if goal.task_type == "pick_two":
        return (f"put two {obj} {prep} {target}.", f"find two {obj} and put them {prep} {target}.")[phrasing]
    transform = goal.transform
    assert transform is not None
    return (
        f"put a {ADJECTIVE[transform]} {obj} {prep} {target}.",
        f"{transform} some {obj} and put it {prep} {target}.",
    )[phrasing]


_TASK_PATTERNS: tuple[tuple[str, str], ...] = (
    ("look", r"(?:look at|examine the) (?P<obj>\w+) (?:under|with) the desklamp\."),
    ("pick_two", r"(?:put two|find two) (?P<obj>\w+)(?: and put them)? (?:in|on) (?P<target>\w+)\."),
    ("transform", r"put a (?P<adj>clean|hot|cool) (?P<obj>\w+) (?:in|on) (?P<target>\w+)\."),
    ("transform", r"(?P<verb>clean|heat|cool) some (?P<obj>\w+) and put it (?:in|on) (?P<target>\w+)\."),
    ("pick", r"put (?:a|some) (?P<obj>\w+) (?:in|on) (?P<target>\w+)\."),
)
_TASK_OF_WORD = {"clean": "clean", "hot": "heat", "heat": "heat", "cool": "cool"}


def parse_task_text(text: str) -> Goal | None:
    """Read the goal back from an instruction (what a non-privileged agent can know)."""
    for task_type, pattern in _TASK_PATTERNS:
        m = re.fullmatch(pattern, text.strip())
        if m is None:
            continue
        groups = m.groupdict()
        if task_type == "transform":
            task_type = _TASK_OF_WORD[groups.get("adj") or groups["verb"]]
        return Goal(task_type, groups["obj"], groups.get("target"), 2 if task_type == "pick_two" else 1)
    return None

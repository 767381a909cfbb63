"""What an agent gets wrong in an ALFRED-style episode (household, ALFWorld), counted per step.

Read from the recorded episode only (the task text, the observations, the actions and the
reasons), so it applies to any policy, a student, an expert or a teacher. A step that ...

- ``revisit``: goes to a receptacle it has already been to, holding the same thing as then:
  nothing new can be seen there (the oscillation of weak students);
- ``no_such_place``: gives a reason naming a receptacle the room does not have, one of a kind it
  has more of ("countertop 4" in a room with three): counting past the last one;
- ``unseen_object``: gives a reason naming anything else ("mug 2") that no observation so far has
  shown: a guess or a hallucination;
- ``wrong_object``: takes an object of another type than the task's;
- ``misplaced``: puts the task's object down anywhere but on a receptacle of the task's target
  type (tasks that have one);
- ``invalid``: was not a valid action;
- ``out_of_steps``: (one per episode) ends unsolved because the horizon ran out.
"""

from __future__ import annotations

import re
from collections import Counter

from leap.envs.alfred.text import parse_task_text, type_of
from leap.memory import room_places
from leap.rollout import Episode

KINDS = ("revisit", "no_such_place", "unseen_object", "wrong_object", "misplaced", "invalid", "out_of_steps")

_NAME = re.compile(r"\b([a-z]+ \d+)\b")


def count_mistakes(episode: Episode) -> Counter[str]:
    """The steps of ``episode`` of each kind of :data:`KINDS` (every kind present, in order)."""
    goal = parse_task_text(episode.task)
    found: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
    shown = set(_NAME.findall(episode.task.lower()))
    places = set(room_places(episode.steps[0].observation)) if episode.steps else set()
    kinds = {type_of(place) for place in places}
    visits: set[tuple[str, str | None]] = set()
    holding: str | None = None
    for step in episode.steps:
        shown.update(_NAME.findall(step.observation.lower()))
        unseen = [name for name in _NAME.findall(step.reason.lower()) if name not in shown]
        if any(type_of(name) in kinds and name not in places for name in unseen):
            found["no_such_place"] += 1
        elif unseen:
            found["unseen_object"] += 1
        if not step.valid:
            found["invalid"] += 1
            continue
        action = step.action.strip().lower()
        if m := re.fullmatch(r"go to (.+)", action):
            if (m.group(1), holding) in visits:
                found["revisit"] += 1
            visits.add((m.group(1), holding))
        elif m := re.fullmatch(r"take (.+) from (.+)", action):
            holding = m.group(1)
            if goal is not None and type_of(holding) != goal.object_type:
                found["wrong_object"] += 1
        elif m := re.fullmatch(r"move (.+) to (.+)", action):
            item, receptacle = m.groups()
            holding = None
            wanted = goal is not None and goal.target_type is not None and type_of(item) == goal.object_type
            if wanted and type_of(receptacle) != goal.target_type:  # type: ignore[union-attr]
                found["misplaced"] += 1
    if not episode.success and episode.error is None and episode.steps and not episode.steps[-1].done:
        found["out_of_steps"] += 1
    return found

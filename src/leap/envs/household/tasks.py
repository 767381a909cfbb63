"""Seeded, deterministic task generation and the train / valid / test_ood splits.

A task id is ``SPLIT/INDEX``; the task is rebuilt from it with ``random.Random("household/ID")``,
so it is the same on every machine and every run. ``test_ood`` draws from held-out
(task type, room, object, target) combinations, and from larger rooms than train and valid ever
show, so it measures generalisation rather than memorised layouts.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from functools import lru_cache

from leap.envs.alfred.catalog import (
    APPLIANCE,
    LAMP,
    LAMP_HOLDERS,
    OBJECTS,
    ROOMS,
    TASK_TYPES,
    TRANSFORM_OF_TASK,
)
from leap.envs.alfred.text import Goal, task_text
from leap.envs.base import UnknownSplitError, UnknownTaskError
from leap.envs.household.world import Layout, State, World

DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 2000, "valid": 200, "test_ood": 200}
#: a development split drawn like test_ood (held-out combinations, larger rooms) but from other
#: seeds, so that out-of-distribution design choices never look at the test tasks; ask for it
#: with ``env.options.split_sizes`` (e.g. ``{..., dev_ood: 200}``)
OPTIONAL_SPLITS = ("dev_ood",)
OUT_OF_DISTRIBUTION = ("test_ood", "dev_ood")
IN_DISTRIBUTION = ("train", "valid")
#: every HELD_OUT_EVERY-th combination (in a fixed hash order) is reserved for test_ood
HELD_OUT_EVERY = 5
#: test_ood rooms may hold this many more receptacles of each type than any training room
OOD_EXTRA_RECEPTACLES = 1


@dataclass(frozen=True)
class Combo:
    task_type: str
    room: str
    object_type: str
    target_type: str | None


def _room_has(room: str, receptacle_type: str) -> bool:
    return ROOMS[room].receptacles.get(receptacle_type, (0, 0))[1] > 0


@lru_cache(maxsize=1)
def combos_by_split() -> dict[str, dict[str, tuple[Combo, ...]]]:
    """``{"in": {task_type: combos}, "ood": {task_type: combos}}``; every type has both."""
    result: dict[str, dict[str, tuple[Combo, ...]]] = {"in": {}, "ood": {}}
    for task_type in TASK_TYPES:
        transform = TRANSFORM_OF_TASK.get(task_type)
        combos: list[Combo] = []
        for room, spec in ROOMS.items():
            if transform and not _room_has(room, APPLIANCE[transform]):
                continue
            if task_type == "look" and not any(_room_has(room, h) for h in LAMP_HOLDERS):
                continue
            for obj in spec.objects:
                kind = OBJECTS[obj]
                if transform and transform not in kind.transforms:
                    continue
                if task_type == "look":
                    if kind.lookable:
                        combos.append(Combo(task_type, room, obj, None))
                    continue
                for target in kind.targets:
                    if _room_has(room, target) and not (transform and target == APPLIANCE[transform]):
                        combos.append(Combo(task_type, room, obj, target))
        combos.sort(key=lambda c: zlib.crc32(repr(c).encode()))
        result["ood"][task_type] = tuple(c for i, c in enumerate(combos) if i % HELD_OUT_EVERY == 0)
        result["in"][task_type] = tuple(c for i, c in enumerate(combos) if i % HELD_OUT_EVERY != 0)
    return result


def _weighted_choice(rng: random.Random, weights: dict[str, float]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def check_task_types(task_types: tuple[str, ...]) -> tuple[str, ...]:
    """The task mix as given, or a one-line error naming the known types."""
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown or not task_types or len(set(task_types)) != len(task_types):
        raise ValueError(
            f"household: task_types must be distinct task types from {list(TASK_TYPES)}; "
            f"got {list(task_types)}"
        )
    return tuple(task_types)


def generate_world(split: str, index: int, task_types: tuple[str, ...] = TASK_TYPES) -> World:
    """Build the world of task ``split/index``, deterministically.

    ``task_types`` restricts the task mix (the default is all six, drawn uniformly); with the
    same ``task_types`` the same id gives the same world everywhere.
    """
    rng = random.Random(f"household/{split}/{index}")
    pool = combos_by_split()["ood" if split in OUT_OF_DISTRIBUTION else "in"]
    task_type = rng.choice(task_types)
    combo = rng.choice(pool[task_type])
    room = ROOMS[combo.room]
    extra = OOD_EXTRA_RECEPTACLES if split in OUT_OF_DISTRIBUTION else 0

    required = {t for t in (combo.target_type,) if t}
    if (transform := TRANSFORM_OF_TASK.get(task_type)) is not None:
        required.add(APPLIANCE[transform])
    if task_type == "look":
        required.add(rng.choice([h for h in LAMP_HOLDERS if _room_has(combo.room, h)]))
    counts = {}
    for rtype, (lo, hi) in room.receptacles.items():
        n = rng.randint(lo, hi + (extra if hi > 1 else 0))
        counts[rtype] = max(n, 1 if rtype in required else 0)
    receptacles = tuple(f"{t} {i}" for t in sorted(counts) for i in range(1, counts[t] + 1))

    lamps: dict[str, str] = {}
    holders = [r for r in receptacles if r.rsplit(" ", 1)[0] in LAMP_HOLDERS]
    if holders and (task_type == "look" or rng.random() < 0.5):
        lamps[f"{LAMP} 1"] = rng.choice(holders)

    goal = Goal(task_type, combo.object_type, combo.target_type, 2 if task_type == "pick_two" else 1)
    state = State(contents={r: [] for r in receptacles})
    numbers: dict[str, int] = {}

    def place(obj_type: str, avoid: str | None) -> None:
        present = {t for t in counts if counts[t] and t != avoid}
        weights = {t: w for t, w in OBJECTS[obj_type].prior.items() if t in present}
        rtype = _weighted_choice(rng, weights) if weights else rng.choice(sorted(present))
        rec = f"{rtype} {rng.randint(1, counts[rtype])}"
        numbers[obj_type] = numbers.get(obj_type, 0) + 1
        name = f"{obj_type} {numbers[obj_type]}"
        state.contents[rec].append(name)
        state.where[name] = rec

    n_task_objects = rng.choice((2, 3)) if task_type == "pick_two" else rng.choice((1, 1, 2))
    for _ in range(n_task_objects):
        place(combo.object_type, avoid=combo.target_type)
    others = [o for o in room.objects if o != combo.object_type]
    for _ in range(rng.randint(4, 10)):
        place(rng.choice(others), avoid=None)
    for objects in state.contents.values():
        rng.shuffle(objects)

    layout = Layout(combo.room, receptacles, lamps, goal, task_text(goal, rng.randint(0, 1)))
    return World(layout, state)


def parse_task_id(task_id: str, sizes: dict[str, int]) -> tuple[str, int]:
    split, _, index = task_id.partition("/")
    if split not in sizes:
        raise UnknownTaskError(
            f"household: unknown task id {task_id!r}: split {split!r} is not one of {sorted(sizes)}"
        )
    if not index.isdigit() or not 0 <= int(index) < sizes[split]:
        raise UnknownTaskError(
            f"household: unknown task id {task_id!r}: expected {split}/N with 0 <= N < {sizes[split]}"
        )
    return split, int(index)


def split_task_ids(sizes: dict[str, int]) -> dict[str, tuple[str, ...]]:
    known = sorted([*DEFAULT_SPLIT_SIZES, *OPTIONAL_SPLITS])
    for split in sizes:
        if split not in known:
            raise UnknownSplitError(f"household: unknown split {split!r}; known splits: {known}")
    return {split: tuple(f"{split}/{i:04d}" for i in range(n)) for split, n in sizes.items()}

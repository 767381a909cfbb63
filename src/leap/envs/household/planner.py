"""The privileged planner: the shortest action sequence from the current true state to the goal.

A plan is a short sequence of macro operations (put down what is held, fetch an object, transform
it, place it, light the lamp). The planner enumerates every choice of object instances, their
order, the target receptacle and the appliance; it expands each choice into commands with a cheap
walk over the state and keeps the shortest. Movement costs one ``go to`` whatever the distance,
as in ALFWorld, so this enumeration is exact over these plan shapes.
"""

from __future__ import annotations

from itertools import permutations, product

from leap.envs.alfred.catalog import APPLIANCE
from leap.envs.alfred.text import type_of
from leap.envs.household.world import World

Op = tuple[str, ...]


def _receptacles_of(world: World, rtype: str) -> list[str]:
    return [r for r in world.layout.receptacles if type_of(r) == rtype]


def _candidate_plans(world: World) -> list[list[Op]]:
    goal, s = world.layout.goal, world.state
    held = s.holding
    held_fits = held is not None and type_of(held) == goal.object_type
    plans: list[list[Op]] = []

    if goal.task_type == "look":
        lamps = sorted(world.layout.lamps)
        if held_fits:
            return [[("light", lamp)] for lamp in lamps]
        objects = [o for o in s.where if type_of(o) == goal.object_type]
        prefix: list[Op] = [("putdown",)] if held is not None else []
        return [[*prefix, ("fetch", o), ("light", lamp)] for o in objects for lamp in lamps]

    assert goal.target_type is not None
    done = set(world.satisfying_objects())
    need = goal.count - len(done)
    candidates = [o for o in s.where if type_of(o) == goal.object_type and o not in done]
    if held_fits:
        candidates.insert(0, held)  # type: ignore[arg-type]
    transform, flag = goal.transform, goal.flag
    appliances = _receptacles_of(world, APPLIANCE[transform]) if transform else [None]
    for target, appliance in product(_receptacles_of(world, goal.target_type), appliances):
        for chosen in permutations(candidates, need):
            if held_fits and chosen[0] != held:
                continue  # putting a fitting object down to fetch another is never shorter
            ops: list[Op] = []
            if held is not None and chosen[0] != held:
                ops.append(("putdown",))
            for obj in chosen:
                if obj != held:
                    ops.append(("fetch", obj))
                if transform and flag not in s.flags.get(obj, ()):
                    assert appliance is not None
                    ops.append(("transform", obj, appliance))
                ops.append(("place", obj, target))
            plans.append(ops)
    return plans


def _expand(world: World, ops: list[Op]) -> list[str]:
    """Turn macro operations into commands, tracking location, open receptacles and the hand."""
    s, layout = world.state, world.layout
    here, opened, held = s.location, set(s.opened), s.holding
    lamps_on = set(s.lamps_on)
    commands: list[str] = []

    def go(rec: str) -> None:
        nonlocal here
        if here != rec:
            commands.append(f"go to {rec}")
            here = rec

    def open_if_closed(rec: str) -> None:
        if layout.openable(rec) and rec not in opened:
            commands.append(f"open {rec}")
            opened.add(rec)

    goal = layout.goal
    for op in ops:
        kind = op[0]
        if kind == "putdown":
            assert here is not None and held is not None
            open_if_closed(here)
            commands.append(f"move {held} to {here}")
            held = None
        elif kind == "fetch":
            rec = s.where[op[1]]
            go(rec)
            open_if_closed(rec)
            commands.append(f"take {op[1]} from {rec}")
            held = op[1]
        elif kind == "transform":
            go(op[2])
            commands.append(f"{goal.transform} {op[1]} with {op[2]}")
        elif kind == "place":
            go(op[2])
            open_if_closed(op[2])
            commands.append(f"move {op[1]} to {op[2]}")
            held = None
        elif kind == "light":
            go(layout.lamps[op[1]])
            if op[1] not in lamps_on:
                commands.append(f"use {op[1]}")
                lamps_on.add(op[1])
        else:
            raise AssertionError(f"unknown plan operation {op!r}")
    return commands


def optimal_plan(world: World) -> list[str]:
    """Shortest command sequence that reaches the goal from the current state ([] if reached)."""
    if world.goal_reached():
        return []
    best: list[str] | None = None
    for ops in _candidate_plans(world):
        commands = _expand(world, ops)
        if best is None or len(commands) < len(best):
            best = commands
    if best is None:
        raise RuntimeError(f"household: no plan reaches the goal {world.layout.goal}")
    return best

"""The privileged state of a household episode, read from the world's true state.

The fields are those every ALFRED-style world fills (``leap.envs.alfred.privileged``): the task,
the essential objects with their true locations, the receptacles involved and the optimal
remaining actions from the planner.
"""

from __future__ import annotations

from leap.envs.alfred.catalog import APPLIANCE
from leap.envs.alfred.privileged import describe_state
from leap.envs.alfred.text import type_of
from leap.envs.base import PrivilegedState
from leap.envs.household.planner import optimal_plan
from leap.envs.household.world import World


def household_state(world: World) -> PrivilegedState:
    goal, s = world.layout.goal, world.state
    objects = []
    for name in sorted(o for o in [*s.where, s.holding] if o and type_of(o) == goal.object_type):
        at = "in your hand" if name == s.holding else s.where[name]
        closed = at in world.layout.receptacles and world.layout.openable(at) and at not in s.opened
        objects.append(
            {"name": name, "location": at, "closed": closed, "state": sorted(s.flags.get(name, ()))}
        )
    involved: dict[str, str] = {}
    if goal.transform:
        for r in world.layout.receptacles:
            if type_of(r) == APPLIANCE[goal.transform]:
                involved[r] = f"to {goal.transform}"
    if goal.target_type:
        for r in world.layout.receptacles:
            if type_of(r) == goal.target_type:
                involved[r] = "target"
    for lamp, at in world.layout.lamps.items():
        if goal.task_type == "look":
            involved[at] = f"holds {lamp}"
    return describe_state(
        {
            "task": world.layout.task_text,
            "task_type": goal.task_type,
            "object_type": goal.object_type,
            "target_type": goal.target_type,
            "objects": objects,
            "receptacles": involved,
            "plan": optimal_plan(world),
        }
    )

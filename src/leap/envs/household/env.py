"""``household``: the embedded ALFWorld-like world, offline and fast."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from leap.envs.base import ActionSpace, Environment, PrivilegedState, StepResult
from leap.envs.household.catalog import APPLIANCE
from leap.envs.household.planner import optimal_plan
from leap.envs.household.privileged import describe_state
from leap.envs.household.tasks import (
    DEFAULT_SPLIT_SIZES,
    generate_world,
    parse_task_id,
    split_task_ids,
)
from leap.envs.household.world import World, type_of
from leap.envs.registry import register_env

if TYPE_CHECKING:
    from leap.policy import Policy


class HouseholdEnv(Environment):
    """Receptacles, objects placed by per-type priors, and ALFWorld's six task types.

    Args:
        horizon: maximum number of actions per episode.
        split_sizes: number of tasks per split (defaults: train 2000, valid 200, test_ood 200).
    """

    name = "household"

    def __init__(self, horizon: int = 20, split_sizes: dict[str, int] | None = None) -> None:
        self.horizon = horizon
        self._sizes = dict(DEFAULT_SPLIT_SIZES if split_sizes is None else split_sizes)
        self._splits = split_task_ids(self._sizes)
        self._world: World | None = None
        self._task_id: str | None = None

    # -- tasks -----------------------------------------------------------------------------------
    def splits(self) -> dict[str, Sequence[str]]:
        return self._splits

    def category(self, task_id: str) -> str:
        return generate_world(*parse_task_id(task_id, self._sizes)).layout.goal.task_type

    # -- episode ---------------------------------------------------------------------------------
    @property
    def world(self) -> World:
        if self._world is None:
            raise RuntimeError("household: call reset(task_id) before stepping")
        return self._world

    @property
    def task(self) -> str:
        return self.world.layout.task_text

    def reset(self, task_id: str) -> StepResult:
        self._world = generate_world(*parse_task_id(task_id, self._sizes))
        self._task_id = task_id
        return StepResult(
            self._world.initial_observation(), 0.0, False, {"success": False, "task": self.task}
        )

    def step(self, action: str) -> StepResult:
        world = self.world
        observation, admissible = world.step(action.strip())
        won = world.goal_reached()
        return StepResult(observation, float(won), won, {"success": won, "admissible": admissible})

    def action_space(self) -> ActionSpace:
        return ActionSpace(choices=tuple(self.world.commands()))

    def privileged_state(self, plan: bool = True) -> PrivilegedState:
        world = self.world
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
        plan = optimal_plan(world)
        data = {
            "task": world.layout.task_text,
            "task_type": goal.task_type,
            "object_type": goal.object_type,
            "target_type": goal.target_type,
            "objects": objects,
            "receptacles": involved,
            "plan": plan,
        }
        return describe_state(data)

    @classmethod
    def experts(cls) -> dict[str, Callable[[], Policy]]:
        from leap.envs.household.experts import PlannerPolicy, SearcherPolicy

        return {"planner": PlannerPolicy, "searcher": SearcherPolicy}

    @classmethod
    def programmatic_teacher(cls, privilege: int) -> Policy:
        from leap.envs.household.teacher import HouseholdTeacherPolicy

        return HouseholdTeacherPolicy(privilege)


@register_env("household")
def make_household(**kwargs: object) -> HouseholdEnv:
    return HouseholdEnv(**kwargs)  # type: ignore[arg-type]

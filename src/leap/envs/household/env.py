"""``household``: the embedded ALFWorld-like world, offline and fast."""

from __future__ import annotations

from collections.abc import Sequence

from leap.envs.alfred.catalog import TASK_TYPES
from leap.envs.base import ActionSpace, Environment, PrivilegedState, StepResult
from leap.envs.household.privileged import household_state
from leap.envs.household.tasks import (
    DEFAULT_SPLIT_SIZES,
    check_task_types,
    generate_world,
    parse_task_id,
    split_task_ids,
)
from leap.envs.household.world import World


class HouseholdEnv(Environment):
    """Receptacles, objects placed by per-type priors, and ALFWorld's six task types.

    Args:
        horizon: maximum number of actions per episode.
        split_sizes: number of tasks per split (defaults: train 2000, valid 200, test_ood 200;
            a development split dev_ood, drawn like test_ood from other seeds, on request).
        task_types: the task mix, a subset of ``pick``, ``clean``, ``heat``, ``cool``, ``look``
            and ``pick_two`` (default: all six, drawn uniformly). Another mix gives other tasks
            under the same ids.
    """

    name = "household"

    def __init__(
        self,
        horizon: int = 20,
        split_sizes: dict[str, int] | None = None,
        task_types: Sequence[str] | None = None,
    ) -> None:
        self.horizon = horizon
        self._task_types = TASK_TYPES if task_types is None else check_task_types(tuple(task_types))
        self._sizes = dict(DEFAULT_SPLIT_SIZES if split_sizes is None else split_sizes)
        self._splits = split_task_ids(self._sizes)
        self._world: World | None = None
        self._task_id: str | None = None

    # -- tasks -----------------------------------------------------------------------------------
    def splits(self) -> dict[str, Sequence[str]]:
        return self._splits

    def category(self, task_id: str) -> str:
        return generate_world(*parse_task_id(task_id, self._sizes), self._task_types).layout.goal.task_type

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
        self._world = generate_world(*parse_task_id(task_id, self._sizes), self._task_types)
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
        return household_state(self.world)

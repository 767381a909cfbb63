"""``webshop``: WebShop's pages, actions and reward over the 1000-product catalogue.

Scores here are on the small synthetic-goal setting and are not comparable with the paper's
human-goal, full-catalogue WebShop numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from leap.envs.base import (
    ActionSpace,
    Environment,
    FreeFormRule,
    PrivilegedState,
    StepResult,
    UnknownTaskError,
)
from leap.envs.webshop.privileged import shop_state
from leap.envs.webshop.products import webshop_data_dir
from leap.envs.webshop.reward import RewardParts, purchase_reward
from leap.envs.webshop.site import (
    OBSERVATION_MODES,
    Page,
    clickables,
    elements,
    open_shop,
    render,
    transition,
)
from leap.envs.webshop.tasks import DEFAULT_SEED, Goal

SEARCH_RULE = FreeFormRule(
    r"search\[[^\[\]\n]*[^\s\[\]][^\[\]\n]*\]", "search[your query], on the search page"
)


class WebShopEnv(Environment):
    """Args:
    data_dir: the catalogue folder (default: $LEAP_WEBSHOP_DATA, then ../shared/data/webshop).
    horizon: most actions per episode (15, the paper's rollouts).
    observation_mode: "simple" ([SEP]-joined) or "rich" (one element a line).
    seed: WebShop's seed for prices, price limits and the split (233).
    """

    name = "webshop"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        horizon: int = 15,
        observation_mode: str = "simple",
        seed: int = DEFAULT_SEED,
    ) -> None:
        if observation_mode not in OBSERVATION_MODES:
            raise ValueError(f"webshop: observation_mode must be one of {OBSERVATION_MODES}")
        self.horizon = horizon
        self.mode = observation_mode
        self.shop = open_shop(webshop_data_dir(data_dir).resolve(), seed)
        self._ids = {s: [f"{s}/{i:04d}" for i in range(len(g))] for s, g in self.shop.goals.items()}
        self._goal: Goal | None = None
        self._page = Page()
        self._parts: RewardParts | None = None

    # -- tasks ------------------------------------------------------------------------------------
    def splits(self) -> dict[str, Sequence[str]]:
        return self._ids

    def goal(self, task_id: str) -> Goal:
        split, _, index = task_id.partition("/")
        goals = self.shop.goals.get(split, [])
        if not index.isdigit() or int(index) >= len(goals):
            raise UnknownTaskError(f"webshop: unknown task {task_id!r}")
        return goals[int(index)]

    def category(self, task_id: str) -> str:
        return self.goal(task_id).category

    # -- episode ----------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self._goal.instruction if self._goal else ""

    @property
    def page(self) -> Page:
        return self._page

    def _observation(self) -> str:
        score = self._parts.reward if self._parts else None
        return render(elements(self._page, self.shop, self.task, score), self.mode)

    def reset(self, task_id: str) -> StepResult:
        self._goal = self.goal(task_id)
        self._page = Page()
        self._parts = None
        return StepResult(self._observation(), info={"success": False, "page": "search"})

    def step(self, action: str) -> StepResult:
        if self._goal is None:
            raise RuntimeError("webshop: step() before reset()")
        nxt = None if self._page.kind == "done" else transition(self._page, action, self.shop)
        if nxt is None:  # an invalid action changes nothing
            reward = self._parts.reward if self._parts else 0.0
            return StepResult(
                self._observation(), reward, self._page.kind == "done", self._info(invalid=True)
            )
        self._page = nxt
        if nxt.kind == "done":
            assert nxt.asin is not None
            product = self.shop.products[nxt.asin]
            self._parts = purchase_reward(product, self._goal, self.shop.prices[nxt.asin], nxt.chosen)
        reward = self._parts.reward if self._parts else 0.0
        return StepResult(self._observation(), reward, nxt.kind == "done", self._info())

    def _info(self, invalid: bool = False) -> dict[str, object]:
        info: dict[str, object] = {"page": self._page.kind, "invalid": invalid}
        info["success"] = bool(self._parts and self._parts.reward >= 1.0)
        if self._parts is not None:
            info["score_parts"] = self._parts.to_info()
            info["bought"] = self._page.asin
        return info

    def action_space(self) -> ActionSpace:
        names = tuple(f"click[{n}]" for n in clickables(self._page, self.shop))
        return ActionSpace(names, SEARCH_RULE if self._page.shows_search_bar else None)

    # -- privileged -------------------------------------------------------------------------------
    def privileged_state(self, plan: bool = True) -> PrivilegedState:
        if self._goal is None:
            raise RuntimeError("webshop: privileged_state() before reset()")
        return shop_state(self._goal, self.shop, self._page if plan else None)

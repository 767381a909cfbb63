"""``alfworld``: ALFWorld's real games on the real text engine (alfworld 0.4.2 and TextWorld)."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leap.envs.alfworld.privileged import alfworld_state
from leap.envs.alfworld.tasks import SPLITS, GameInfo, load_split, resolve_games_root
from leap.envs.alfworld.workers import GameWorker, pool
from leap.envs.base import ActionSpace, EnvError, Environment, PrivilegedState, StepResult, UnknownTaskError


def _shuffled(task_id: str) -> str:
    """A fixed pseudo-random order, so that the first N games of a split mix all task types."""
    return hashlib.sha1(task_id.encode()).hexdigest()


class AlfworldEnv(Environment):
    """The text games of ALFWorld (Shridhar et al., 2021), one per task id.

    Task ids are the games' paths below ``json_2.1.1``:
    ``valid_seen/pick_and_place_simple-Pencil-None-Dresser-330/trial_T2019...``. Each split lists
    them in a fixed pseudo-random order, so that its first N games mix all task types.

    Args:
        data_dir: the folder that holds ``json_2.1.1/`` (default: ``$ALFWORLD_DATA``, then the
            shared tarballs, unpacked once into the cache).
        horizon: most actions per episode (30, as in the paper; alfworld's own code ran 20).
        prefetch: load the next game in the worker while the current one runs (see ``prepare``).
    """

    name = "alfworld"
    parallel_calls = True

    def __init__(self, data_dir: str | Path | None = None, horizon: int = 30, prefetch: bool = True) -> None:
        for module in ("alfworld", "textworld"):
            if importlib.util.find_spec(module) is None:
                raise EnvError(
                    f"alfworld: the Python package {module!r} is missing; install the text engine "
                    "with: pip install alfworld==0.4.2"
                )
        self.horizon = horizon
        self.prefetch = prefetch
        self.root = resolve_games_root(data_dir)
        self._games: dict[str, GameInfo] = {}
        self._splits: dict[str, list[str]] = {}
        for split in SPLITS:
            games = load_split(self.root, split)
            if games:
                self._splits[split] = sorted((g.task_id for g in games), key=_shuffled)
                self._games.update((g.task_id, g) for g in games)
        self._worker: GameWorker | None = None
        self._handle = 0
        self._game: GameInfo | None = None
        self._last: dict[str, Any] | None = None

    # -- tasks -----------------------------------------------------------------------------------
    def splits(self) -> dict[str, Sequence[str]]:
        return self._splits

    def _lookup(self, task_id: str) -> GameInfo:
        if task_id not in self._games:
            raise UnknownTaskError(
                f"alfworld: unknown task id {task_id!r} (ids look like "
                "valid_seen/pick_and_place_simple-Pencil-None-Dresser-330/trial_T20190908_...)"
            )
        return self._games[task_id]

    def category(self, task_id: str) -> str:
        return self._lookup(task_id).category

    # -- episode ---------------------------------------------------------------------------------
    def _bind(self) -> GameWorker:
        if self._worker is None or not self._worker.alive:
            self._worker, self._handle = pool().assign()
        return self._worker

    @staticmethod
    def _request(game: GameInfo) -> tuple[str, dict[str, Any]]:
        return str(game.path), {**game.params, "task_type": game.task_type}

    def prepare(self, task_id: str) -> None:
        """Start loading ``task_id`` in this instance's worker, for a later ``reset``."""
        if self.prefetch and task_id in self._games:
            self._bind().tell("prepare", *self._request(self._games[task_id]))

    def reset(self, task_id: str) -> StepResult:
        game = self._lookup(task_id)
        state = self._bind().call("reset", self._handle, *self._request(game))
        self._game, self._last = game, state
        return StepResult(state["observation"], 0.0, False, {"success": False, "task": state["task"]})

    def step(self, action: str) -> StepResult:
        if self._worker is None or self._last is None:
            raise RuntimeError("alfworld: call reset(task_id) before stepping")
        state = self._worker.call("step", self._handle, action.strip())
        self._last = state
        won = state["won"]
        return StepResult(state["observation"], float(won), won, {"success": won})

    @property
    def task(self) -> str:
        if self._last is None:
            raise RuntimeError("alfworld: call reset(task_id) first")
        return self._last["task"]

    def action_space(self) -> ActionSpace:
        if self._last is None:
            raise RuntimeError("alfworld: call reset(task_id) first")
        return ActionSpace(choices=tuple(self._last["admissible"]))

    def privileged_state(self, plan: bool = True) -> PrivilegedState:
        if self._worker is None or self._last is None:
            raise RuntimeError("alfworld: call reset(task_id) first")
        return alfworld_state(self._worker.call("privileged", self._handle, plan))

    def worker_stats(self) -> dict[str, int]:
        """Counters of this instance's worker: loads, prepared_hits, reused, prepared, games."""
        return self._bind().call("stats")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.tell("drop", self._handle)
        self._last = None

"""Batched lockstep rollouts: many episodes advance together, one batched policy call per step.

Finished episodes free their slot for the next task at once, so the batch stays full.
A crash inside an environment ends only that episode, which is marked as errored.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leap.envs.base import ActionSpace, Environment, StepResult
from leap.policy import AgentView, Policy, Turn

log = logging.getLogger(__name__)


@dataclass
class StepRecord:
    t: int
    observation: str
    candidates: dict[str, Any]
    action: str
    reason: str
    raw: str
    prompt_sha: str | None
    valid: bool
    reward: float
    done: bool
    info: dict[str, Any]


@dataclass
class Episode:
    episode_id: str
    env: str
    task_id: str
    category: str
    task: str
    policy: str
    steps: list[StepRecord] = field(default_factory=list)
    success: bool = False
    score: float = 0.0
    error: str | None = None

    @property
    def n_actions(self) -> int:
        return len(self.steps)

    @property
    def n_invalid(self) -> int:
        return sum(not s.valid for s in self.steps)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(n_actions=self.n_actions, n_invalid=self.n_invalid)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Episode:
        fields = {k: v for k, v in record.items() if k not in ("n_actions", "n_invalid", "steps")}
        return cls(**fields, steps=[StepRecord(**s) for s in record.get("steps", [])])


@dataclass
class _Slot:
    env: Environment
    episode: Episode
    observation: str
    space: ActionSpace
    turns: list[Turn] = field(default_factory=list)


def _json_safe(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if isinstance(v, str | int | float | bool | list | dict | None)}


def run_episodes(
    make_env: Callable[[], Environment],
    task_ids: Sequence[str],
    policy: Policy,
    *,
    horizon: int | None = None,
    batch_size: int = 16,
    on_episode: Callable[[Episode], None] | None = None,
    show_progress: bool = True,
    label: str = "rollout",
) -> list[Episode]:
    """Run one episode per task id, ``batch_size`` at a time, and return them in task order.

    ``on_episode`` is called as each episode finishes (to append it to a JSONL file, say).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    pending = list(enumerate(task_ids))[::-1]
    finished: dict[int, Episode] = {}
    idle_envs: list[Environment] = []
    slots: dict[int, _Slot] = {}

    def finish(index: int, episode: Episode) -> None:
        finished[index] = episode
        if on_episode is not None:
            on_episode(episode)
        progress.advance(bar)

    def start_next() -> None:
        while pending and len(slots) < batch_size:
            index, task_id = pending.pop()
            env = idle_envs.pop() if idle_envs else make_env()
            episode = Episode(task_id, env.name, task_id, "", "", policy.name)
            try:
                episode.category = env.category(task_id)
                first: StepResult = env.reset(task_id)
                episode.task = env.task
                slots[index] = _Slot(env, episode, first.observation, env.action_space())
            except Exception as exc:  # a broken task must not stop the others
                log.warning("episode %s failed at reset: %s", task_id, exc)
                episode.error = f"reset: {type(exc).__name__}: {exc}"
                _discard(env)
                finish(index, episode)
                continue

    def _discard(env: Environment) -> None:
        try:
            env.close()
        except Exception:  # pragma: no cover - best effort
            log.debug("close failed", exc_info=True)

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes · {task.fields[steps]} steps"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        bar = progress.add_task(label, total=len(task_ids), steps=0)
        n_steps = 0
        start_next()
        while slots:
            order = sorted(slots)
            views = []
            for i in order:
                slot = slots[i]
                privileged = slot.env.privileged_state() if policy.privileged else None
                views.append(
                    AgentView(
                        slot.episode.episode_id,
                        slot.episode.task,
                        slot.observation,
                        slot.space,
                        tuple(slot.turns),
                        privileged,
                    )
                )
            decisions = policy.act(views)
            if len(decisions) != len(views):
                raise RuntimeError(
                    f"{policy.name} returned {len(decisions)} decisions for {len(views)} views"
                )
            for i, decision in zip(order, decisions, strict=True):
                slot = slots[i]
                ep, horizon_i = slot.episode, horizon or slot.env.horizon
                try:
                    result = slot.env.step(decision.action)
                except Exception as exc:
                    log.warning("episode %s crashed at step %d: %s", ep.episode_id, len(ep.steps), exc)
                    ep.error = (
                        f"step {len(ep.steps)}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
                    )
                    _discard(slot.env)
                    del slots[i]
                    finish(i, ep)
                    continue
                ep.steps.append(
                    StepRecord(
                        t=len(ep.steps),
                        observation=slot.observation,
                        candidates=slot.space.to_record(),
                        action=decision.action,
                        reason=decision.reason,
                        raw=decision.raw,
                        prompt_sha=decision.prompt_sha,
                        valid=slot.space.is_valid(decision.action),
                        reward=result.reward,
                        done=result.done,
                        info=_json_safe(result.info),
                    )
                )
                slot.turns.append(Turn(slot.observation, decision.reason, decision.action))
                ep.success, ep.score = result.success, result.reward
                n_steps += 1
                if result.done or len(ep.steps) >= horizon_i:
                    idle_envs.append(slot.env)
                    del slots[i]
                    finish(i, ep)
                else:
                    slot.observation = result.observation
                    try:
                        slot.space = slot.env.action_space()
                    except Exception as exc:
                        ep.error = f"action_space: {type(exc).__name__}: {exc}"
                        _discard(slot.env)
                        del slots[i]
                        finish(i, ep)
            progress.update(bar, steps=n_steps)
            start_next()
    for env in idle_envs:
        _discard(env)
    return [finished[i] for i in range(len(task_ids))]

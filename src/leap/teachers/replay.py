"""Rebuild the student's own states, with the privileged state, by replaying recorded actions."""

from __future__ import annotations

import logging

from leap.envs.base import Environment
from leap.policy import AgentView, Turn
from leap.rollout import Episode

log = logging.getLogger(__name__)


class ReplayMismatch(RuntimeError):
    """The environment did not reproduce the recorded episode (it is not deterministic)."""


def replay(env: Environment, episode: Episode) -> list[AgentView]:
    """One privileged view per recorded step: the student's history and observation at that
    step, the candidates it had, and the privileged state of that moment.

    Stops at the first step whose observation the environment does not reproduce, and raises
    ReplayMismatch if that is the very first.
    """
    views: list[AgentView] = []
    first = env.reset(episode.task_id)
    observation = first.observation
    turns: list[Turn] = []
    for t, step in enumerate(episode.steps):
        if observation != step.observation:
            message = f"{episode.episode_id}: replay diverged at step {t}"
            if t == 0:
                raise ReplayMismatch(message)
            log.warning(message)
            break
        views.append(
            AgentView(
                episode.episode_id,
                episode.task,
                step.observation,
                env.action_space(),
                tuple(turns),
                env.privileged_state(),
            )
        )
        turns.append(Turn(step.observation, step.reason, step.action))
        if t + 1 < len(episode.steps):
            observation = env.step(step.action).observation
    return views


def privileged_text(views: list[AgentView], privilege: int = 100) -> str:
    """The privileged state at the start of a replayed episode, as a teacher at ``privilege``
    read it."""
    return views[0].privileged.visible_at(privilege) if views and views[0].privileged is not None else ""

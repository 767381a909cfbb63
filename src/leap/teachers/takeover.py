"""Take-over corrections: the privileged teacher finishes a failed episode from a state the
student got itself into, so the student learns a whole recovery in context instead of isolated
steps (a roll-in by the student, a roll-out by the teacher).

The episode keeps the student's own steps up to the take-over step, drawn between its first
error and its last step (its own state distribution, as in LEAP's per-step corrections); from
there the teacher acts, with its realizable reasons, until the task is done or the horizon is
reached. Every teacher step becomes a sample on that history. Only a teacher that can act (a
programmatic privileged policy) can take over; its steps are validated and audited like any
correction.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from leap.envs.base import Environment
from leap.policy import AgentView, Policy, Turn
from leap.rollout import Episode, StepRecord
from leap.teachers.base import EpisodeCorrection
from leap.teachers.replay import ReplayMismatch
from leap.teachers.selection import normalize_action


def first_divergence(correction: EpisodeCorrection, episode: Episode) -> int | None:
    """The first step whose corrected action differs from the student's (None: it never does)."""
    for s in sorted(correction.steps, key=lambda s: s.step):
        student = episode.steps[s.step].action if s.step < len(episode.steps) else ""
        if normalize_action(s.action) != normalize_action(student):
            return s.step
    return None


def takeover_step(correction: EpisodeCorrection, episode: Episode, seed: int) -> int | None:
    """Where the teacher takes over: a step drawn uniformly (seeded by ``seed`` and the episode)
    from the student's first error to its last step, so that the recoveries start from every
    kind of state the student gets itself into (a wrong first guess, a loop, a wrong object in
    hand); None where the teacher agrees with every step."""
    first = first_divergence(correction, episode)
    if first is None:
        return None
    last = max(first, len(episode.steps) - 1)
    return random.Random(f"takeover/{seed}/{episode.episode_id}").randint(first, last)


def take_over(
    episode: Episode, t: int, policy: Policy, make_env: Callable[[], Environment], horizon: int | None = None
) -> Episode:
    """``episode``'s first ``t`` steps, replayed, then ``policy`` acting until the episode ends.

    The result is a new episode (id ``EPISODE+takeover``, policy the teacher's name) whose steps
    from ``t`` on are the teacher's, until the task is done or ``horizon`` steps (default: the
    environment's) are reached. Raises ``ReplayMismatch`` if the replay does not reproduce the
    student's observations (a non-deterministic environment).
    """
    env = make_env()
    try:
        result = env.reset(episode.task_id)
        steps: list[StepRecord] = []
        turns: list[Turn] = []
        for step in episode.steps[:t]:
            if result.observation != step.observation:
                raise ReplayMismatch(f"{episode.episode_id}: replay diverged at step {step.t}")
            steps.append(step)
            turns.append(Turn(step.observation, step.reason, step.action))
            result = env.step(step.action)
        out = dataclasses.replace(
            episode,
            episode_id=f"{episode.episode_id}+takeover",
            policy=policy.name,
            steps=steps,
            success=False,
            score=0.0,
            error=None,
        )
        limit = horizon or env.horizon
        while len(out.steps) < limit and not result.done:
            space = env.action_space()
            view = AgentView(
                out.episode_id,
                episode.task,
                result.observation,
                space,
                tuple(turns),
                env.privileged_state(),
            )
            decision = policy.act([view])[0]
            observation = result.observation
            result = env.step(decision.action)
            out.steps.append(
                StepRecord(
                    t=len(out.steps),
                    observation=observation,
                    candidates=space.to_record(),
                    action=decision.action,
                    reason=decision.reason,
                    raw="",
                    prompt_sha=None,
                    valid=space.is_valid(decision.action),
                    reward=result.reward,
                    done=result.done,
                    info={},
                )
            )
            turns.append(Turn(observation, decision.reason, decision.action))
            out.success, out.score = result.success, result.reward
        return out
    finally:
        env.close()

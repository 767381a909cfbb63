"""Corrections from the environment's own privileged policy (no model, no cost)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from leap.envs.base import Environment
from leap.policy import Policy
from leap.rollout import Episode
from leap.teachers.base import EpisodeCorrection, StepCorrection, Teacher
from leap.teachers.leakage import audit
from leap.teachers.replay import ReplayMismatch, privileged_text, replay
from leap.teachers.validation import Rejection, validate_step

log = logging.getLogger(__name__)


class ProgrammaticTeacher(Teacher):
    """Replays each failed episode and asks the privileged policy what to do at every step."""

    def __init__(self, policy: Policy, *, drop_leaks: bool = False) -> None:
        self.policy = policy
        self.name = policy.name
        #: reject steps whose reason the leakage audit flags (``teacher.leakage: drop``), as the
        #: LLM teacher does; otherwise they are kept and flagged
        self.drop_leaks = drop_leaks

    def correct(
        self, episodes: Sequence[Episode], make_env: Callable[[], Environment]
    ) -> list[EpisodeCorrection]:
        env = make_env()
        out = []
        try:
            for episode in episodes:
                result = EpisodeCorrection(episode.episode_id, self.name)
                try:
                    views = replay(env, episode)
                except ReplayMismatch as exc:
                    log.warning("%s", exc)
                    result.rejections["replay_mismatch"] += len(episode.steps)
                    out.append(result)
                    continue
                if len(views) < len(episode.steps):
                    result.rejections["replay_mismatch"] += len(episode.steps) - len(views)
                result.privileged = privileged_text(views, getattr(self.policy, "privilege", 100))
                for view, decision in zip(views, self.policy.act(views), strict=True):
                    t = len(view.history)
                    checked = validate_step(
                        f"REASON: {decision.reason}\nACTION: {decision.action}", view.action_space, t
                    )
                    result.rejections.update(checked.rejections)
                    for step, (reason, action) in checked.steps.items():
                        leaks = audit(reason, view)
                        if leaks and self.drop_leaks:
                            result.rejections[Rejection.LEAK] += 1
                            continue
                        result.steps.append(StepCorrection(step, reason, action, leaks))
                out.append(result)
        finally:
            env.close()
        return out

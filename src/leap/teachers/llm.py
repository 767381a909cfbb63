"""The privileged LLM teacher, on any chat model: whole-trajectory or per-step corrections.

Requests for many episodes go out in one batched call; replies that are unusable as a whole
(failed request, empty, no JSON) are retried with a new seed, at most ``max_retries`` times.
Partly bad replies keep their good steps. A ``Budget`` is checked between batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from leap.agents import PromptSettings, prompt_environment, step_context
from leap.envs.base import Environment
from leap.models.base import ChatModel, Conversation, Generation
from leap.policy import AgentView
from leap.privilege import check_level
from leap.rollout import Episode
from leap.settings import StrictModel
from leap.teachers.base import EpisodeCorrection, StepCorrection, Teacher
from leap.teachers.leakage import audit
from leap.teachers.replay import ReplayMismatch, privileged_text, replay
from leap.teachers.validation import Rejection, Validated, validate_step, validate_trajectory

log = logging.getLogger(__name__)


class BudgetExceeded(RuntimeError):
    """The run's teacher budget is spent; the loop stops cleanly."""


class Budget(StrictModel):
    """Caps on teacher spending (``budget`` in a run config). Prices are US dollars per million
    tokens (gpt-4o list prices by default), for cost accounting."""

    max_teacher_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)
    price_input_per_m: float = Field(default=2.5, ge=0)
    price_output_per_m: float = Field(default=10.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_input_per_m + completion_tokens * self.price_output_per_m) / 1e6

    def check(self, prompt_tokens: int, completion_tokens: int) -> None:
        cap = self.max_teacher_tokens
        if cap is not None and prompt_tokens + completion_tokens >= cap:
            raise BudgetExceeded(f"teacher token budget of {cap} reached")
        if self.max_cost_usd is not None and self.cost(prompt_tokens, completion_tokens) >= self.max_cost_usd:
            raise BudgetExceeded(f"teacher cost budget of ${self.max_cost_usd:.2f} reached")


@dataclass
class _Job:
    """One request to make: an episode (trajectory mode) or one step of it (step mode)."""

    index: int
    steps: list[int]
    conversation: Conversation


class LLMTeacher(Teacher):
    def __init__(
        self,
        model: ChatModel,
        *,
        mode: Literal["trajectory", "step"] = "trajectory",
        privilege: int = 50,
        max_retries: int = 2,
        temperature: float = 0.0,
        max_new_tokens: int = 1024,
        batch_episodes: int = 16,
        seed: int = 0,
        show_candidates: bool = True,
        drop_leaks: bool = False,
        prompt: PromptSettings | None = None,
        budget: Budget | None = None,
        name: str | None = None,
    ) -> None:
        check_level(privilege, who="the LLM teacher")
        if mode not in ("trajectory", "step"):
            raise ValueError(f"teacher mode must be trajectory or step, not {mode!r}")
        self.model, self.mode, self.privilege = model, mode, privilege
        self.max_retries, self.temperature, self.max_new_tokens = max_retries, temperature, max_new_tokens
        self.batch_episodes, self.seed, self.show_candidates = batch_episodes, seed, show_candidates
        self.drop_leaks = drop_leaks
        self.prompt = prompt or PromptSettings(history_steps=6)
        self.budget = budget or Budget()
        self.name = name or f"{model.name}@{privilege}/{mode}"

    # -- prompts ---------------------------------------------------------------------------------
    def _system(self) -> dict[str, str]:
        return {
            "role": "system",
            "content": prompt_environment().get_template("teacher/system.j2").render().strip(),
        }

    def _trajectory_prompt(self, episode: Episode, views: list[AgentView]) -> Conversation:
        steps = []
        for view, step in zip(views, episode.steps, strict=False):
            space = view.action_space
            steps.append(
                {
                    "t": len(view.history),
                    "observation": view.observation,
                    "reason": step.reason,
                    "action": step.action,
                    "choices": space.choices,
                    "free_form": space.free_form.description if space.free_form else "",
                }
            )
        privileged = views[0].privileged.visible_at(self.privilege) if views and views[0].privileged else ""
        user = (
            prompt_environment()
            .get_template("teacher/trajectory.j2")
            .render(
                task=episode.task,
                privilege=self.privilege,
                privileged=privileged,
                steps=steps,
                outcome=f"{'succeeded' if episode.success else 'failed'}, score {episode.score:.2f}",
                show_candidates=self.show_candidates,
                max_observation_chars=self.prompt.max_observation_chars,
            )
        )
        return [self._system(), {"role": "user", "content": user.strip()}]

    def _step_prompt(self, episode: Episode, view: AgentView) -> Conversation:
        context: dict[str, Any] = step_context(view, self.prompt)
        user = (
            prompt_environment()
            .get_template("teacher/step.j2")
            .render(
                **context,
                privilege=self.privilege,
                privileged=view.privileged.visible_at(self.privilege) if view.privileged else "",
                student_reply=episode.steps[len(view.history)].raw.strip(),
            )
        )
        return [self._system(), {"role": "user", "content": user.strip()}]

    # -- accounting ------------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        return self.model.usage.to_dict()

    def cost_usd(self, usage: dict[str, int]) -> float:
        return self.budget.cost(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

    @property
    def cache_hits(self) -> int:
        return getattr(self.model, "hits", 0)

    # -- protocol --------------------------------------------------------------------------------
    def correct(
        self, episodes: Sequence[Episode], make_env: Callable[[], Environment]
    ) -> list[EpisodeCorrection]:
        out: list[EpisodeCorrection] = []
        env = make_env()
        try:
            for start in range(0, len(episodes), self.batch_episodes):
                chunk = episodes[start : start + self.batch_episodes]
                self.budget.check(self.model.usage.prompt_tokens, self.model.usage.completion_tokens)
                out.extend(self._correct_chunk(chunk, env))
        finally:
            env.close()
        return out

    def _correct_chunk(self, episodes: Sequence[Episode], env: Environment) -> list[EpisodeCorrection]:
        results = [EpisodeCorrection(e.episode_id, self.name) for e in episodes]
        all_views: list[list[AgentView]] = []
        jobs: list[_Job] = []
        for i, episode in enumerate(episodes):
            try:
                views = replay(env, episode)
            except ReplayMismatch as exc:
                log.warning("%s", exc)
                views = []
            if len(views) < len(episode.steps):
                results[i].rejections["replay_mismatch"] += len(episode.steps) - len(views)
            results[i].privileged = privileged_text(views, self.privilege)
            all_views.append(views)
            if not views:
                continue
            if self.mode == "trajectory":
                jobs.append(_Job(i, list(range(len(views))), self._trajectory_prompt(episode, views)))
            else:
                jobs.extend(_Job(i, [t], self._step_prompt(episode, v)) for t, v in enumerate(views))

        for attempt in range(self.max_retries + 1):
            if not jobs:
                break
            replies = self.model.generate(
                [j.conversation for j in jobs],
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
                seed=self.seed + attempt,
            )
            retry = []
            for job, reply in zip(jobs, replies, strict=True):
                checked = self._validate(job, reply, all_views[job.index])
                last_try = attempt == self.max_retries
                if checked.usable or last_try or not self._retryable(checked):
                    self._accept(results[job.index], checked, all_views[job.index])
                else:
                    retry.append(job)
            jobs = retry
        return results

    def _validate(self, job: _Job, reply: Generation, views: list[AgentView]) -> Validated:
        if reply.error is not None:
            failed = Validated()
            failed.rejections[Rejection.REQUEST_FAILED] += len(job.steps)
            return failed
        if self.mode == "trajectory":
            return validate_trajectory(reply.text, [v.action_space for v in views])
        t = job.steps[0]
        return validate_step(reply.text, views[t].action_space, t)

    @staticmethod
    def _retryable(checked: Validated) -> bool:
        whole = {
            Rejection.REQUEST_FAILED,
            Rejection.EMPTY_REPLY,
            Rejection.NO_JSON,
            Rejection.NO_STEPS,
            Rejection.LENGTH_MISMATCH,
        }
        return any(cause in whole for cause in checked.rejections)

    def _accept(self, result: EpisodeCorrection, checked: Validated, views: list[AgentView]) -> None:
        result.rejections.update(checked.rejections)
        result.summary = result.summary or checked.summary
        for t, (reason, action) in sorted(checked.steps.items()):
            leaks = audit(reason, views[t])
            if leaks and self.drop_leaks:
                result.rejections[Rejection.LEAK] += 1
                continue
            result.steps.append(StepCorrection(t, reason, action, leaks))
        result.steps.sort(key=lambda s: s.step)

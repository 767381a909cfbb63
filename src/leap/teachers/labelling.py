"""Auto-labelled reasons for demonstrations that have actions but no reasons (iteration 0)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from leap.agents import PromptSettings, parse_reply, prompt_environment, step_context
from leap.data import view_at
from leap.models.base import ChatModel
from leap.rollout import Episode


def label_reasons(
    episodes: Sequence[Episode], model: ChatModel, prompt: PromptSettings, max_new_tokens: int = 64
) -> list[Episode]:
    """Fill the empty reasons of every step with one batched model call; keep existing ones.

    A reply without a usable reason leaves the step's reason empty (the sample still teaches
    the action).
    """
    template = prompt_environment().get_template("teacher/label_reason.j2")
    jobs = []
    for i, episode in enumerate(episodes):
        for t, step in enumerate(episode.steps):
            if not step.reason.strip():
                context = step_context(view_at(episode, t), prompt)
                jobs.append(
                    (i, t, [{"role": "user", "content": template.render(**context, action=step.action)}])
                )
    replies = model.generate([conv for _, _, conv in jobs], max_new_tokens=max_new_tokens) if jobs else []
    labelled = [dataclasses.replace(e, steps=[dataclasses.replace(s) for s in e.steps]) for e in episodes]
    for (i, t, _), reply in zip(jobs, replies, strict=True):
        text = reply.text.strip()
        reason = parse_reply(text).reason or (text.splitlines()[0] if text else "")
        labelled[i].steps[t].reason = " ".join(reason.split())
    return labelled

"""Training samples with lineage, their aggregation over iterations, and SFT/DPO/KTO exports.

A sample's input is always the student's *own* prompt at that step (its own history, re-rendered
exactly as the student saw it); its output is the teacher's target, ``REASON: ...\\nACTION: ...``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from leap.agents import PromptSettings, format_completion, prompt_environment, prompt_sha, render_prompt
from leap.envs.base import ActionSpace
from leap.io import atomic_write_jsonl, read_jsonl
from leap.models.base import Message
from leap.policy import AgentView, Turn
from leap.rollout import Episode
from leap.settings import UpdateRule

log = logging.getLogger(__name__)


def template_sha(settings: PromptSettings) -> str:
    """Hash of the prompt template sources, so a sample records exactly which prompt made it."""
    env = prompt_environment()
    blob = "".join(env.loader.get_source(env, n)[0] for n in settings.templates)  # type: ignore[union-attr]
    blob += f"|{settings.history_steps}|{settings.max_observation_chars}"
    if settings.layout != "single":  # hashes of samples made before layouts existed stay the same
        blob += f"|{settings.layout}"
    if settings.memory != "none":
        blob += f"|{settings.memory}"
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Sample:
    """One training example, with where it came from."""

    iteration: int
    episode_id: str
    task_id: str
    step: int
    teacher: str
    template: str
    template_sha: str
    prompt: list[Message]
    #: the teacher's target
    completion: str
    #: the student's own reply at this step (None for demonstrations)
    rejected: str | None = None
    #: the leakage audit flagged the target's reason
    leaked: bool = False

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def view_at(episode: Episode, t: int) -> AgentView:
    """The view the student had at step ``t`` of a recorded episode."""
    steps = episode.steps
    turns = tuple(Turn(s.observation, s.reason, s.action) for s in steps[:t])
    step = steps[t]
    return AgentView(
        episode.episode_id, episode.task, step.observation, ActionSpace.from_record(step.candidates), turns
    )


def student_prompt(episode: Episode, t: int, settings: PromptSettings) -> list[Message]:
    return render_prompt(view_at(episode, t), settings)


def make_sample(
    episode: Episode,
    t: int,
    *,
    iteration: int,
    teacher: str,
    reason: str,
    action: str,
    settings: PromptSettings,
    rejected: str | None = None,
    leaked: bool = False,
) -> Sample:
    prompt = student_prompt(episode, t, settings)
    recorded = episode.steps[t].prompt_sha
    if recorded is not None and recorded != prompt_sha(prompt):
        # the input must be the student's own prompt; a different prompt setting breaks that
        log.warning(
            "episode %s step %d: re-rendered prompt differs from the one the student saw "
            "(were the rollout's prompt settings different?)",
            episode.episode_id,
            t,
        )
    return Sample(
        iteration=iteration,
        episode_id=episode.episode_id,
        task_id=episode.task_id,
        step=t,
        teacher=teacher,
        template=settings.style,
        template_sha=template_sha(settings),
        prompt=prompt,
        completion=format_completion(reason, action),
        rejected=rejected,
        leaked=leaked,
    )


# -- aggregation ---------------------------------------------------------------------------------
def load_samples(paths: Iterable[Path]) -> list[Sample]:
    return [Sample(**row) for path in paths for row in read_jsonl(path)]


def aggregate(
    per_iteration: Sequence[Sequence[Sample]], cap_per_iteration: int | None = None
) -> list[Sample]:
    """D = D_0 ∪ ... ∪ D_i: the union of every iteration's samples.

    ``cap_per_iteration`` (explicit in the config, logged here) keeps at most that many samples of
    each iteration, the first ones in a fixed order; without it nothing is dropped.
    """
    union: list[Sample] = []
    for i, samples in enumerate(per_iteration):
        kept = list(samples) if cap_per_iteration is None else list(samples)[:cap_per_iteration]
        if len(kept) < len(samples):
            log.info("iteration %d: capped %d samples to %d (cap_per_iteration)", i, len(samples), len(kept))
        union.extend(kept)
    return union


# -- exports -------------------------------------------------------------------------------------
def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def sft_rows(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows: TRL trains on the completion only.

    Samples of one episode whose prompts extend each other (a transcript prompt, where the
    previous target is the assistant turn of the next prompt, as in a demonstration) are packed
    into one row whose completion holds several turns; ``leap.train`` puts the loss on its
    assistant turns only. One sequence per episode instead of one per step: the prompt of every
    step is computed once, not once per later step.
    """
    rows: list[dict[str, Any]] = []
    chain: list[Sample] = []
    for sample in samples:
        if chain and _extends(chain[-1], sample):
            chain.append(sample)
            continue
        if chain:
            rows.append(_packed_row(chain))
        chain = [sample]
    if chain:
        rows.append(_packed_row(chain))
    return rows


def _extends(before: Sample, after: Sample) -> bool:
    """``after``'s prompt is ``before``'s prompt, its target as the assistant's turn, and one new
    user turn."""
    n = len(before.prompt)
    return (
        before.episode_id == after.episode_id
        and len(after.prompt) == n + 2
        and after.prompt[:n] == before.prompt
        and after.prompt[n] == _assistant(before.completion)[0]
        and after.prompt[n + 1]["role"] == "user"
    )


def _packed_row(chain: Sequence[Sample]) -> dict[str, Any]:
    completion: list[Message] = []
    for k, sample in enumerate(chain):
        if k:
            completion.append(sample.prompt[-1])
        completion.extend(_assistant(sample.completion))
    return {"prompt": chain[0].prompt, "completion": completion}


def _differs(s: Sample) -> bool:
    return s.rejected is not None and s.rejected.strip() != s.completion.strip()


def dpo_rows(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Preference pairs: the teacher's target over the student's own reply (where they differ)."""
    return [
        {"prompt": s.prompt, "chosen": _assistant(s.completion), "rejected": _assistant(s.rejected or "")}
        for s in samples
        if _differs(s)
    ]


def kto_rows(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Unpaired labelled examples: every target is desirable, every differing student reply is not."""
    rows = []
    for s in samples:
        rows.append({"prompt": s.prompt, "completion": _assistant(s.completion), "label": True})
        if _differs(s):
            rows.append({"prompt": s.prompt, "completion": _assistant(s.rejected or ""), "label": False})
    return rows


EXPORTERS = {"sft": sft_rows, "dpo": dpo_rows, "kto": kto_rows}


def export(samples: Sequence[Sample], rule: UpdateRule, path: Path) -> int:
    """Write the training file for ``rule``; returns the number of rows."""
    rows = EXPORTERS[rule](samples)
    atomic_write_jsonl(path, rows)
    return len(rows)

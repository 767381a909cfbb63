"""Which of a teacher's corrected steps become training samples.

A teacher answers for every step of a failed episode, but not every step needed an answer: where
the student already did what the teacher would do, the sample only repeats the student; and a
student stuck in a loop gets the same correction at every turn of it, so one failure can fill the
dataset with one action. Both filters are config options (``loop.correction_steps``,
``loop.max_repeats_per_episode``); the teacher's full answer stays in ``corrections.jsonl``.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from leap.rollout import Episode
from leap.teachers.base import EpisodeCorrection, StepCorrection

CorrectionSteps = Literal["all", "divergent"]


def normalize_action(action: str) -> str:
    return " ".join(action.lower().split())


def select_steps(
    correction: EpisodeCorrection,
    episode: Episode,
    *,
    steps: CorrectionSteps = "all",
    max_repeats: int | None = None,
) -> tuple[list[StepCorrection], Counter[str]]:
    """The corrected steps to train on, in step order, and the dropped ones counted by cause.

    ``steps="divergent"`` keeps only the steps where the teacher's action differs from the
    student's; ``max_repeats`` keeps at most that many steps with the same corrected action (the
    earliest ones).
    """
    kept: list[StepCorrection] = []
    dropped: Counter[str] = Counter()
    uses: Counter[str] = Counter()
    for s in sorted(correction.steps, key=lambda s: s.step):
        action = normalize_action(s.action)
        student = episode.steps[s.step].action if s.step < len(episode.steps) else ""
        if steps == "divergent" and action == normalize_action(student):
            dropped["agrees_with_student"] += 1
            continue
        if max_repeats is not None and uses[action] >= max_repeats:
            dropped["repeated_action"] += 1
            continue
        uses[action] += 1
        kept.append(s)
    return kept, dropped

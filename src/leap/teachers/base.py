"""The teacher protocol: failed episodes in, validated corrections out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from leap.envs.base import Environment
from leap.rollout import Episode


@dataclass
class StepCorrection:
    step: int
    reason: str
    action: str
    #: labels of the privileged facts the leakage audit found in the reason
    leaks: list[str] = field(default_factory=list)


@dataclass
class EpisodeCorrection:
    """What a teacher made of one episode: accepted steps, and rejected ones counted by cause."""

    episode_id: str
    teacher: str
    steps: list[StepCorrection] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    summary: str = ""
    #: the privileged state the teacher saw at the episode's start (for reports and the viewer)
    privileged: str = ""

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["rejections"] = dict(self.rejections)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EpisodeCorrection:
        return cls(
            episode_id=record["episode_id"],
            teacher=record["teacher"],
            steps=[StepCorrection(**s) for s in record["steps"]],
            rejections=Counter(record["rejections"]),
            summary=record.get("summary", ""),
            privileged=record.get("privileged", ""),
        )


class Teacher(ABC):
    name: str = "teacher"

    @abstractmethod
    def correct(
        self, episodes: Sequence[Episode], make_env: Callable[[], Environment]
    ) -> list[EpisodeCorrection]:
        """Corrections for each episode, in order. Never raises on a bad reply: it rejects."""

    # -- accounting ------------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """What the teacher has paid for so far (tokens, requests); empty for a free teacher."""
        return {}

    def cost_usd(self, usage: dict[str, int]) -> float:
        """The price of ``usage``."""
        return 0.0

    @property
    def cache_hits(self) -> int:
        """Requests answered from the on-disk cache (paid for in an earlier, killed run)."""
        return 0

    def report(
        self, corrections: Sequence[EpisodeCorrection], usage_before: dict[str, int]
    ) -> dict[str, Any]:
        """What ``correct`` produced and cost since ``usage_before`` (a ``usage()`` snapshot)."""
        rejections: Counter[str] = Counter()
        for c in corrections:
            rejections.update(c.rejections)
        accepted = [s for c in corrections for s in c.steps]
        leaked = sum(bool(s.leaks) for s in accepted)
        now = self.usage()
        spent = {key: now[key] - usage_before.get(key, 0) for key in now}
        return {
            "teacher": self.name,
            "episodes_corrected": len(corrections),
            "steps_accepted": len(accepted),
            "steps_rejected": sum(rejections.values()),
            "rejections": dict(rejections),
            "leaked_steps": leaked,
            "leakage_rate": leaked / len(accepted) if accepted else 0.0,
            "usage": spent,
            "cache_hits": self.cache_hits,
            "cost_usd": self.cost_usd(spent),
        }

"""The model protocol: batched chat generation and log-probability scoring."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

Message = dict[str, str]
Conversation = list[Message]


class ModelError(RuntimeError):
    """A model cannot be loaded or cannot do what was asked."""


@dataclass(frozen=True)
class ChoiceConstraint:
    """Constrained decoding: once ``marker`` has been written, the rest of the reply must be one
    of ``choices`` (the agent's ``ACTION:`` line restricted to the candidate actions)."""

    marker: str
    choices: tuple[str, ...]


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: set when the request failed after all retries; ``text`` is then empty
    error: str | None = None
    #: failed attempts before the final one, by cause (rate_limited, server_error, timeout,
    #: connection, bad_response); none of them was paid for
    faults: dict[str, int] = field(default_factory=dict)


@dataclass
class Usage:
    """Token accounting, summed over the life of a model object (thread-safe)."""

    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: failed attempts (retried or final) by cause, over every request
    faults: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, generation: Generation) -> None:
        with self._lock:
            self.requests += 1
            self.failures += generation.error is not None
            self.prompt_tokens += generation.prompt_tokens
            self.completion_tokens += generation.completion_tokens
            self.faults.update(generation.faults)

    def to_dict(self) -> dict[str, int]:
        """The counters; faults by cause as ``faults/CAUSE`` (present once one happened)."""
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_") and k != "faults"}
        out.update({f"faults/{cause}": n for cause, n in sorted(self.faults.items())})
        return out


class ChatModel(ABC):
    """Many conversations in, many texts out."""

    name: str = "model"
    #: ``generate`` may be called from several threads at once, because each call is a request
    #: to a server that batches requests itself: rollouts then let every episode advance as soon
    #: as its own reply arrives (``leap.rollout``) instead of waiting for a step's slowest one
    concurrent: bool = False

    def __init__(self) -> None:
        self.usage = Usage()

    @abstractmethod
    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        seed: int | None = None,
        stop: Sequence[str] = (),
        constraints: Sequence[ChoiceConstraint | None] | None = None,
    ) -> list[Generation]:
        """One reply per conversation, in order. ``temperature == 0`` means greedy decoding.

        Text is cut before the first stop string. A failed request gives a Generation with
        ``error`` set instead of raising, so one bad request never ends a batch. ``constraints``
        (one per conversation, or None) restrict the end of a reply to given choices; a backend
        that cannot enforce them generates freely and says so once in the log.
        """

    @abstractmethod
    def score(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each completion as the assistant reply to its conversation."""

    def describe(self) -> str:
        """Where and how the model runs, for progress lines (e.g. ``cuda · bf16 · sdpa``)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text

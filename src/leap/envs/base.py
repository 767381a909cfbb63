"""The environment protocol every leap environment implements.

An environment runs one episode at a time. A rollout makes as many instances as it runs episodes
in parallel, so instances must not share mutable state.

    env = make_env("household")
    first = env.reset(env.task_ids("valid")[0])
    while not result.done:
        space = env.action_space()          # admissible commands, or a rule for free-form ones
        result = env.step(space.choices[0])
    env.privileged_state()                  # what a teacher may see and the student never does
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from leap.privilege import visible_text


class EnvError(Exception):
    """Base class for errors an environment raises on bad requests (unknown task, split, ...)."""


class UnknownTaskError(EnvError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class UnknownSplitError(EnvError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class FreeFormRule:
    """A rule for actions that cannot be listed, such as ``search[...]`` or a shell command.

    ``pattern`` is a regular expression the whole action must match; ``description`` tells a
    model (and a person reading logs) what is allowed.
    """

    pattern: str
    description: str

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.DOTALL)

    def accepts(self, action: str) -> bool:
        return self._regex.fullmatch(action) is not None


@dataclass(frozen=True)
class ActionSpace:
    """The candidate actions at one step: listed choices, a free-form rule, or both."""

    choices: tuple[str, ...] = ()
    free_form: FreeFormRule | None = None

    def is_valid(self, action: str) -> bool:
        if action in self.choices:
            return True
        return self.free_form is not None and self.free_form.accepts(action)

    def to_record(self) -> dict[str, Any]:
        rule = self.free_form
        return {
            "choices": list(self.choices),
            "free_form": None if rule is None else {"pattern": rule.pattern, "description": rule.description},
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ActionSpace:
        rule = record.get("free_form")
        return cls(tuple(record.get("choices", ())), FreeFormRule(**rule) if rule else None)


@dataclass
class StepResult:
    """What ``reset`` and ``step`` return.

    ``reward`` is the environment's score for the episode so far (0..1); ``info["success"]`` says
    whether the task is solved. Environments may add their own keys to ``info`` (score parts...).
    """

    observation: str
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.info.get("success", False))


@dataclass(frozen=True)
class Secret:
    """A privileged fact, for the leakage audit.

    A teacher's reason leaks it when it matches ``pattern`` (a case-insensitive regular expression
    searched in the whole reason; bound it to one sentence with ``[^.;]*`` where that matters)
    while ``evidence`` has not yet appeared in anything the student observed; ``evidence=None``
    means the student can never observe it (a gold command, say).
    """

    pattern: str
    evidence: str | None = None
    label: str = ""


@dataclass(frozen=True)
class PrivilegedState:
    """Facts about the current task that the student never sees.

    ``text`` is rendered into teacher prompts; ``data`` is the same content in structured form for
    programmatic teachers; ``secrets`` are what the leakage audit looks for in teacher reasons;
    ``summary`` is the part a teacher at privilege 25 reads: the task's requirements, without
    hidden locations, answers or plans (see ``leap.privilege``).
    """

    text: str
    data: dict[str, Any]
    secrets: tuple[Secret, ...] = ()
    summary: str = ""

    def visible_at(self, level: int) -> str:
        """The text a teacher at privilege ``level`` reads."""
        return visible_text(self, level)


class Environment(ABC):
    """A partially observable text task with a privileged state available at training time."""

    #: registry name, e.g. "household"
    name: str = ""
    #: default maximum number of actions per episode
    horizon: int = 30
    #: reset/step/privileged_state mostly wait on other processes, so a rollout may call them for
    #: several instances at once from threads
    parallel_calls: bool = False

    # -- tasks --------------------------------------------------------------------------------
    @abstractmethod
    def splits(self) -> dict[str, Sequence[str]]:
        """All task ids, grouped by split name."""

    def task_ids(self, split: str) -> Sequence[str]:
        splits = self.splits()
        if split not in splits:
            raise UnknownSplitError(
                f"{self.name}: unknown split {split!r}; known splits: {', '.join(sorted(splits))}"
            )
        return splits[split]

    @abstractmethod
    def category(self, task_id: str) -> str:
        """The task's category (task type), used for per-category tables."""

    # -- episode ------------------------------------------------------------------------------
    @abstractmethod
    def reset(self, task_id: str) -> StepResult:
        """Start the episode of ``task_id``; raises UnknownTaskError for an unknown id."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply one text action. An invalid action must not crash: it changes nothing."""

    @property
    @abstractmethod
    def task(self) -> str:
        """The instruction the agent is given for the current episode."""

    @abstractmethod
    def action_space(self) -> ActionSpace:
        """The candidate actions in the current state."""

    @abstractmethod
    def privileged_state(self, plan: bool = True) -> PrivilegedState:
        """The privileged state of the current task, from the current state.

        ``plan=False`` may leave out the expert's optimal remaining actions where computing them
        is costly (ALFWorld's planner); policies that do not read them say so with
        ``Policy.needs_plan = False``.
        """

    def prepare(self, task_id: str) -> None:  # noqa: B027 - optional hook
        """A hint that this instance will be reset to ``task_id`` next: start loading it now."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, temporary directories)."""

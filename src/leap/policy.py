"""What a policy sees and returns. Experts, LLM students and teachers all act through this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from leap.envs.base import ActionSpace, PrivilegedState


@dataclass(frozen=True)
class Turn:
    """One past step: the observation the agent saw, then what it said and did."""

    observation: str
    reason: str
    action: str


@dataclass(frozen=True)
class AgentView:
    """Everything a policy may use at one step of one episode."""

    episode_id: str
    task: str
    observation: str
    action_space: ActionSpace
    history: tuple[Turn, ...] = ()
    #: only filled for policies that declare ``privileged = True``
    privileged: PrivilegedState | None = None


@dataclass
class Decision:
    """A policy's output for one step."""

    action: str
    reason: str = ""
    #: the model's reply as generated (empty for programmatic policies)
    raw: str = ""
    #: hash of the rendered prompt, to find or re-render it later
    prompt_sha: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Policy(ABC):
    """Maps a batch of views to a batch of decisions, one batched call per rollout step."""

    name: str = "policy"
    #: a privileged policy receives ``AgentView.privileged``
    privileged: bool = False
    #: whether it reads the expert's optimal remaining actions (``privileged.data["plan"]``)
    needs_plan: bool = True
    #: ``act`` may be called from several threads at once, one episode each (a model on a
    #: server): rollouts then advance every episode as soon as its decision arrives
    concurrent: bool = False

    @abstractmethod
    def act(self, views: list[AgentView]) -> list[Decision]:
        """Decide one action for each view, in order."""

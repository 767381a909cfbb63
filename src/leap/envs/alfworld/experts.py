"""ALFWorld's experts: alfworld's handcoded expert, with realizable reasons, for demonstrations;
the shared ALFRED planner (it follows TextWorld's optimal commands in ``privileged.data["plan"]``)
and searcher."""

from __future__ import annotations

from leap.envs.alfred.experts import PlannerPolicy, SearcherPolicy
from leap.envs.alfred.teacher import knowledge_of, realizable_reason
from leap.envs.alfred.text import parse_task_text
from leap.policy import AgentView, Decision, Policy

__all__ = ["HandcodedExpertPolicy", "PlannerPolicy", "SearcherPolicy"]


class HandcodedExpertPolicy(Policy):
    """alfworld's handcoded expert (privileged: it reads the engine's facts), as in the paper's
    demonstrations. Its reasons appeal to observations and priors, never to hidden locations."""

    name = "handcoded"
    privileged = True
    needs_plan = False  # TextWorld's replanning can take seconds; this expert never reads it

    def act(self, views: list[AgentView]) -> list[Decision]:
        return [self._decide(view) for view in views]

    def _decide(self, view: AgentView) -> Decision:
        if view.privileged is None:
            raise ValueError("handcoded: the rollout did not pass the privileged state")
        data = view.privileged.data
        action = data.get("handcoded_next") or "look"
        goal = parse_task_text(view.task)
        if goal is None:
            return Decision(action=action, reason=f"I {action}.")
        where = {o["name"]: o["location"] for o in data["objects"]}
        know = knowledge_of(view, goal)
        return Decision(action=action, reason=realizable_reason(action, goal, know, 50, where))

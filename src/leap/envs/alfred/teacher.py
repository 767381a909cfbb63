"""The programmatic privileged teacher of ALFRED-style worlds (household, ALFWorld), at five levels.

| level | action | reason |
|---|---|---|
| 0   | the non-privileged searcher's | the searcher's (priors and observations) |
| 25  | the planner's when the student's observations justify it, else the searcher's | realizable |
| 50  | the planner's | realizable: observations and public priors, never the hidden location |
| 75  | the planner's | hints at the hidden location ("I expect the mug at the cabinet 3.") |
| 100 | the planner's | states the hidden facts ("The mug 2 is in the cabinet 3.") |

At 75 and 100 the reasons name facts the student has not observed; the leakage audit flags them.
Realizable reasons keep an object type and a specific receptacle out of one sentence unless
the student has seen the object there, which is the convention the audit checks.
"""

from __future__ import annotations

import re

from leap.envs.alfred.catalog import APPLIANCE, LAMP_HOLDERS, object_prior, preposition
from leap.envs.alfred.experts import Knowledge, SearcherPolicy
from leap.envs.alfred.text import Goal, parse_task_text, type_of
from leap.policy import AgentView, Decision, Policy
from leap.privilege import LEVELS, check_level


def knowledge_of(view: AgentView, goal: Goal | None) -> Knowledge:
    know = Knowledge()
    observations = [t.observation for t in view.history] + [view.observation]
    for turn, result in zip(view.history, observations[1:], strict=True):
        know.update(turn.action, result, goal)
    return know


def _justified(action: str, goal: Goal, know: Knowledge) -> bool:
    """Could the student have chosen this planner action from what it has observed?"""
    if m := re.fullmatch(r"take (.+) from (.+)", action):
        # ALFWorld puts some receptacles at one spot (a desk and its drawers): the object must
        # have been seen there, not merely be reachable
        return m.group(1) in know.seen.get(m.group(2), [])
    if not action.startswith("go to "):
        return True  # acting where one stands (open, move, heat, use...) is always visible
    rec = action.removeprefix("go to ")
    rtype = type_of(rec)
    if goal.target_type == rtype or (goal.transform and APPLIANCE[goal.transform] == rtype):
        return True
    return any(type_of(item) == goal.object_type for item in know.seen.get(rec, []))


def realizable_reason(action: str, goal: Goal, know: Knowledge, privilege: int, where: dict[str, str]) -> str:
    """A reason for ``action``. ``where`` maps essential objects to their true receptacles."""
    obj = goal.object_type
    if m := re.fullmatch(r"go to (.+)", action):
        rec = m.group(1)
        seen_here = [i for i in know.seen.get(rec, []) if type_of(i) == obj]
        if seen_here:
            return f"I saw the {seen_here[0]} at the {rec}. I go there to take it."
        held = know.holding
        if held and goal.transform and type_of(rec) == APPLIANCE[goal.transform]:
            return f"I need to {goal.transform} the {held}. The {rec} can do that."
        if held and type_of(rec) == goal.target_type:
            return f"I have the {held}. I bring it to the {rec}."
        hidden = [o for o, r in where.items() if r == rec]
        if privilege >= 100 and hidden:
            return f"The {hidden[0]} is in the {rec}, so I go there."
        if privilege >= 75 and hidden:
            return f"I expect the {obj} at the {rec}."
        if goal.task_type == "look" and held and type_of(rec) in LAMP_HOLDERS:
            return f"Desklamps usually stand on a desk, sidetable or dresser. Next I check the {rec}."
        prior = object_prior(obj).get(type_of(rec), 0.0)
        if prior > 0:
            return f"A {obj} is often found on a {type_of(rec)}. Next I check the {rec}."
        return f"I have not searched the {rec} yet. Something I need may be there."
    if m := re.fullmatch(r"open (.+)", action):
        return f"The {m.group(1)} is closed. I open it to see what is inside."
    if m := re.fullmatch(r"take (.+) from (.+)", action):
        return f"Here is a {type_of(m.group(1))}, which the task needs. I take the {m.group(1)}."
    if m := re.fullmatch(r"(clean|heat|cool) (.+) with (.+)", action):
        return f"The task needs the {type_of(m.group(2))} {m.group(1)}ed first. I use the {m.group(3)}."
    if m := re.fullmatch(r"move (.+) to (.+)", action):
        item, rec = m.groups()
        if type_of(item) == obj and type_of(rec) == goal.target_type:
            return f"I put the {item} {preposition(type_of(rec))} the {rec}, as the task asks."
        return f"I do not need the {item}. I put it down to free my hands."
    if m := re.fullmatch(r"use (.+)", action):
        return f"I turn on the {m.group(1)} to look at the {know.holding or obj} under its light."
    return f"I {action}."


class AlfredTeacherPolicy(Policy):
    """Corrections for ALFRED-style episodes; privileged (it reads the planner's next action)."""

    privileged = True
    #: the environment's name, for the teacher's name in corrections and sample lineage
    world = "alfred"
    levels = LEVELS

    def __init__(self, privilege: int = 50) -> None:
        self.privilege = check_level(privilege, self.levels, f"{self.world}'s programmatic teacher")
        self.name = f"{self.world}-teacher@{privilege}"
        self._searcher = SearcherPolicy()

    def act(self, views: list[AgentView]) -> list[Decision]:
        return [self._decide(v) for v in views]

    def _decide(self, view: AgentView) -> Decision:
        if view.privileged is None:
            raise ValueError(f"{self.name}: the privileged state was not passed")
        fallback = self._searcher.act([view])[0]
        goal = parse_task_text(view.task)
        plan = view.privileged.data["plan"]
        if self.privilege == 0 or goal is None or not plan:
            return fallback
        know = knowledge_of(view, goal)
        action = plan[0]
        if self.privilege == 25 and not _justified(action, goal, know):
            return fallback
        where = {o["name"]: o["location"] for o in view.privileged.data["objects"]}
        return Decision(action=action, reason=realizable_reason(action, goal, know, self.privilege, where))

"""Programmatic household policies.

- ``planner``: privileged; takes the next action of the optimal plan from the true state.
- ``searcher``: not privileged; rebuilds what it knows from the observations it has seen and
  searches receptacles in the order of the public location prior of the object it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from leap.envs.alfred.catalog import (
    APPLIANCE,
    LAMP,
    LAMP_HOLDERS,
    is_openable,
    object_prior,
    preposition,
)
from leap.envs.alfred.text import FLAG, Goal, parse_listing, parse_task_text, type_of
from leap.policy import AgentView, Decision, Policy


class PlannerPolicy(Policy):
    name = "planner"
    privileged = True

    def act(self, views: list[AgentView]) -> list[Decision]:
        decisions = []
        for view in views:
            if view.privileged is None:
                raise ValueError("planner: the rollout did not pass the privileged state")
            plan = view.privileged.data["plan"]
            action = plan[0] if plan else "look"
            decisions.append(Decision(action=action, reason=f"The next step of the plan is: {action}."))
        return decisions


_ARRIVE = re.compile(r"You arrive at (?P<rec>[\w ]+? \d+)\. (?P<desc>.*)", re.DOTALL)
_OPEN = re.compile(r"You open the (?P<rec>[\w ]+? \d+)\. (?P<desc>.*)", re.DOTALL)
_SEE = re.compile(r"(?:On the [\w ]+? \d+, you see|In it, you see) (?P<items>.*?)\.$")


@dataclass
class Knowledge:
    """What the agent has observed so far in one episode."""

    location: str | None = None
    holding: str | None = None
    seen: dict[str, list[str]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    flags: dict[str, set[str]] = field(default_factory=dict)
    placed: set[str] = field(default_factory=set)
    lamps_on: set[str] = field(default_factory=set)

    def read_description(self, rec: str, desc: str) -> None:
        if desc.startswith(f"The {rec} is closed."):
            self.closed.add(rec)
            return
        self.closed.discard(rec)
        m = _SEE.search(desc)
        if m:
            self.seen[rec] = parse_listing(m.group("items"))

    def update(self, action: str, result: str, goal: Goal | None) -> None:
        if m := _ARRIVE.fullmatch(result):
            self.location = m.group("rec")
            self.read_description(m.group("rec"), m.group("desc"))
        elif m := _OPEN.fullmatch(result):
            self.read_description(m.group("rec"), m.group("desc"))
        elif result.startswith("You pick up the "):
            obj, rec = re.fullmatch(r"take (.+) from (.+)", action).groups()  # type: ignore[union-attr]
            self.holding = obj
            if obj in self.seen.get(rec, []):
                self.seen[rec].remove(obj)
        elif result.startswith("You move the "):
            obj, rec = re.fullmatch(r"move (.+) to (.+)", action).groups()  # type: ignore[union-attr]
            self.holding = None
            self.seen.setdefault(rec, []).append(obj)
            if goal is not None and type_of(rec) == goal.target_type:
                self.placed.add(obj)
        elif m := re.fullmatch(r"You (clean|heat|cool) the (.+) using the .+\.", result):
            self.flags.setdefault(m.group(2), set()).add(FLAG[m.group(1)])  # type: ignore[index]
        elif m := re.fullmatch(r"You turn on the (.+)\.", result):
            self.lamps_on.add(m.group(1))
        elif action.startswith("examine ") and self.location is not None:
            self.read_description(self.location, result)


class SearcherPolicy(Policy):
    """A competent non-privileged agent: it only knows the task, the priors and what it saw."""

    name = "searcher"
    privileged = False

    def act(self, views: list[AgentView]) -> list[Decision]:
        return [self._decide(view) for view in views]

    def _decide(self, view: AgentView) -> Decision:
        goal = parse_task_text(view.task)
        choices = view.action_space.choices
        if goal is None:
            return Decision(action="look", reason="I do not understand the task.")
        know = Knowledge()
        observations = [t.observation for t in view.history] + [view.observation]
        for turn, result in zip(view.history, observations[1:], strict=True):
            know.update(turn.action, result, goal)
        reachable = {c.removeprefix("go to ") for c in choices if c.startswith("go to ")}
        receptacles = sorted(reachable | ({know.location} if know.location else set()), key=_natural)
        action, reason = self._choose(goal, know, receptacles)
        if action not in choices:
            lamp_search = LAMP_HOLDERS if goal.task_type == "look" and know.holding else None
            action, reason = self._explore(goal, know, receptacles, lamp_search)
        return Decision(action=action, reason=reason)

    def _go_or(self, know: Knowledge, rec: str, action: str, reason: str) -> tuple[str, str]:
        if know.location != rec:
            return f"go to {rec}", reason
        if rec in know.closed or (is_openable(type_of(rec)) and rec not in know.seen):
            return f"open {rec}", f"The {rec} is closed, so I open it."
        return action, reason

    def _choose(self, goal: Goal, know: Knowledge, receptacles: list[str]) -> tuple[str, str]:
        obj = goal.object_type
        held = know.holding
        if held is not None and type_of(held) != obj:
            return self._go_or(
                know,
                know.location or "",
                f"move {held} to {know.location}",
                f"I do not need the {held}; I put it down here.",
            )
        if held is not None:
            transform, flag = goal.transform, goal.flag
            if transform and flag not in know.flags.get(held, set()):
                appliance = next(r for r in receptacles if type_of(r) == APPLIANCE[transform])
                if know.location != appliance:
                    return (
                        f"go to {appliance}",
                        f"I have the {held}; I need to {transform} it with the {appliance}.",
                    )
                return f"{transform} {held} with {appliance}", f"I {transform} the {held} here."
            if goal.task_type == "look":
                lamp_at = next(
                    (r for r, items in know.seen.items() if any(type_of(i) == LAMP for i in items)), None
                )
                if lamp_at is None:
                    return self._explore(goal, know, receptacles, LAMP_HOLDERS)
                lamp = next(i for i in know.seen[lamp_at] if type_of(i) == LAMP)
                if know.location != lamp_at:
                    return f"go to {lamp_at}", f"I saw a {lamp} on the {lamp_at}; I go there with the {held}."
                return f"use {lamp}", f"I turn on the {lamp} to look at the {held}."
            targets = [r for r in receptacles if type_of(r) == goal.target_type]
            target = know.location if know.location in targets else targets[0]
            return self._go_or(
                know,
                target,
                f"move {held} to {target}",
                f"I have the {held}; I put it {preposition(type_of(target))} the {target}.",
            )
        for rec in receptacles:
            if goal.target_type and type_of(rec) == goal.target_type:
                continue
            for item in know.seen.get(rec, []):
                if type_of(item) == obj and item not in know.placed:
                    return self._go_or(
                        know, rec, f"take {item} from {rec}", f"I saw a {item} on the {rec}; I take it."
                    )
        return self._explore(goal, know, receptacles, None)

    def _explore(
        self, goal: Goal, know: Knowledge, receptacles: list[str], only: tuple[str, ...] | None
    ) -> tuple[str, str]:
        prior = {} if only else object_prior(goal.object_type)
        unseen = [
            r
            for r in receptacles
            if r not in know.seen
            and (only is None or type_of(r) in only)
            and not (only is None and type_of(r) == goal.target_type)
        ]
        if not unseen:
            unseen = [r for r in receptacles if r not in know.seen]
        if not unseen:
            return "look", "I have searched everywhere; I look around."
        unseen.sort(key=lambda r: -prior.get(type_of(r), 0.0))
        rec = unseen[0]
        what = LAMP if only else goal.object_type
        reason = (
            f"A {what} is often found on a {type_of(rec)}; I check the {rec}."
            if prior.get(type_of(rec))
            else f"I have not looked at the {rec} yet; the {what} may be there."
        )
        return self._go_or(know, rec, f"examine {rec}", reason)


def _natural(name: str) -> tuple[str, int]:
    kind, _, number = name.rpartition(" ")
    return (kind, int(number)) if number.isdigit() else (name, 0)

"""One ALFWorld game on the real text engine (alfworld 0.4.2 + TextWorld), and what it can tell.

This module is imported inside the game worker processes only (see ``serve.py``); it answers
the main process with plain dicts.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from leap.envs.alfred.catalog import APPLIANCE, Transform

#: the transformation each alfworld task type asks for
TRANSFORMS: dict[str, Transform] = {
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
}
_WELCOME = re.compile(r"^-= Welcome to TextWorld, ALFRED! =-\s*", re.S)
_TASK = re.compile(r"\s*Your task is to: (?P<task>.+?)\s*$", re.S)
#: object types the planner's facts call e.g. ``alarmclocktype``; receptacles ``desktype``
_TYPE_SUFFIX = "type"


def _arg_names(fact: Any) -> list[str]:
    return [v.name.strip() for v in fact.arguments]


@dataclass
class GameSession:
    """A loaded game: the TextWorld environment, its last state and alfworld's handcoded expert."""

    path: str
    params: dict[str, Any]
    env: Any = None
    state: Any = None
    expert: Any = None
    expert_next: str | None = None
    task: str = ""
    intro: str = ""
    #: the planner's optimal remaining commands, while the agent follows them (None: replan)
    _plan: list[str] | None = None
    #: plans by state (the set of true facts), kept across resets of this game
    _plans: dict[frozenset[str], list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str, params: dict[str, Any]) -> GameSession:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        # no policy_commands: TextWorld would replan after every step, which takes seconds on some
        # games; the plan is computed on demand instead (see ``plan``)
        infos = textworld.EnvInfos(
            feedback=True, won=True, admissible_commands=True, facts=True, extras=["gamefile"]
        )
        session = cls(path, params)
        session.env = textworld.start(path, infos, wrappers=[AlfredDemangler(), AlfredInfos])
        return session

    # -- playing ----------------------------------------------------------------------------------
    def reset(self) -> dict[str, Any]:
        from alfworld.agents.expert import HandCodedTWAgent

        # the handcoded expert breaks ties with `random`; seed it per game for reproducible demos
        random.seed(zlib.crc32(self.path.encode()))
        self.state = self.env.reset()
        feedback = self.state["feedback"]
        body = _WELCOME.sub("", feedback)
        m = _TASK.search(body)
        self.task = m.group("task").strip() if m else ""
        self.intro = body[: m.start()].strip() if m else body.strip()
        # the game file's walkthrough is the planner's solution from the initial state
        walkthrough = getattr(self.env, "walkthrough", None)
        self._plan = list(walkthrough) if walkthrough else None
        self.expert = HandCodedTWAgent(max_steps=200)
        try:
            self.expert.reset(self.path)
            self.expert.observe(feedback)
            self.expert_next = "look"  # alfworld's expert opens every game with a look
        except Exception:  # the handcoded expert is a heuristic; its failure ends nothing
            self.expert, self.expert_next = None, None
        return self.observation(self.intro)

    def step(self, command: str) -> dict[str, Any]:
        self.state, _, _ = self.env.step(command)
        # an optimal plan's suffix stays optimal while the agent follows it
        following = (
            self._plan and self._plan[0] == command and "Nothing happens" not in self.state["feedback"]
        )
        self._plan = self._plan[1:] if following else None
        feedback = self.state["feedback"].strip()
        if self.expert is not None:
            try:
                nxt = self.expert.act(self.state, 0, self.state["won"], command)
                self.expert_next = nxt if nxt in self.state["admissible_commands"] else None
            except Exception:
                self.expert_next = None
        return self.observation(feedback)

    def observation(self, text: str) -> dict[str, Any]:
        return {
            "observation": text,
            "task": self.task,
            "won": bool(self.state["won"]),
            "admissible": list(self.state["admissible_commands"]),
        }

    def plan(self) -> list[str]:
        """TextWorld's optimal remaining commands from the current state (fast-downward).

        Replanning takes from milliseconds to tens of seconds depending on the game, so a plan is
        kept while the agent follows it and remembered per state (a looping agent revisits them).
        """
        if self._plan is None:
            key = frozenset(str(f) for f in self.state["_facts"])
            if key not in self._plans:
                won = self.state["won"]
                self._plans[key] = (
                    [] if won else list(self.env._pddl_state.replan(self.env._entity_infos) or [])
                )
            self._plan = self._plans[key]
        return list(self._plan)

    # -- privileged state -------------------------------------------------------------------------
    def privileged(self, with_plan: bool = True) -> dict[str, Any]:
        """Exact facts from the engine: where the task's objects really are, the receptacles it
        involves, the planner's optimal remaining commands, and the handcoded expert's next one."""
        facts = self.state["facts"]
        types: dict[str, str] = {}
        where: dict[str, str] = {}
        opened: set[str] = set()
        openable: set[str] = set()
        holding: set[str] = set()
        flags: dict[str, set[str]] = {}
        for f in facts:
            args = _arg_names(f)
            if f.name in ("objecttype", "receptacletype") and len(args) == 2:
                types[args[0]] = args[1].removesuffix(_TYPE_SUFFIX)
            elif f.name == "inreceptacle" and len(args) == 2:
                where[args[0]] = args[1]
            elif f.name == "opened" and args:
                opened.add(args[0])
            elif f.name == "openable" and args:
                openable.add(args[0])
            elif f.name == "holds" and len(args) == 2:
                holding.add(args[1])
            elif f.name in ("isclean", "ishot", "iscool", "istoggled") and args:
                flags.setdefault(args[0], set()).add(f.name.removeprefix("is"))
        p = self.params
        wanted = {str(p.get(k, "")).lower() for k in ("object_target", "toggle_target") if p.get(k)}
        recep_types = {str(p.get(k, "")).lower() for k in ("parent_target", "mrecep_target") if p.get(k)}
        objects = []
        for name in sorted(n for n, t in types.items() if t in wanted):
            at = "in your hand" if name in holding else where.get(name, "unknown")
            objects.append(
                {
                    "name": name,
                    "location": at,
                    "closed": at in openable and at not in opened,
                    "state": sorted(flags.get(name, ())),
                }
            )
        transform = TRANSFORMS.get(str(p.get("task_type", "")))
        appliance = APPLIANCE[transform] if transform else None
        involved: dict[str, str] = {}
        for name, t in sorted(types.items()):
            if t in recep_types and name not in where:
                involved[name] = "target"
            elif appliance and t == appliance:
                involved[name] = f"to {transform}"
        return {
            "task": self.task,
            "task_type": str(p.get("task_type", "")),
            "object_type": str(p.get("object_target", "")).lower(),
            "target_type": str(p.get("parent_target", "")).lower() or None,
            "objects": objects,
            "receptacles": involved,
            "plan": self.plan() if with_plan else None,
            "handcoded_next": self.expert_next,
        }

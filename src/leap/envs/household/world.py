"""The rules of the household world: state, admissible commands, transitions and text.

A ``World`` is a fixed layout (receptacles, lamps, the goal) plus a small mutable state. It is
cheap to copy, which is how the planner simulates candidate plans with the very same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leap.envs.alfred.catalog import APPLIANCE, OBJECTS, RECEPTACLES
from leap.envs.alfred.text import FLAG, Goal, listing, type_of

NOTHING_HAPPENS = "Nothing happens."


@dataclass(frozen=True)
class Layout:
    room: str
    #: receptacle names in the order the room description lists them
    receptacles: tuple[str, ...]
    #: lamp name -> receptacle it stands on
    lamps: dict[str, str]
    goal: Goal
    task_text: str

    def openable(self, receptacle: str) -> bool:
        return RECEPTACLES[type_of(receptacle)].openable


@dataclass
class State:
    location: str | None = None
    holding: str | None = None
    opened: set[str] = field(default_factory=set)
    #: receptacle -> objects in it, in the order they were put there
    contents: dict[str, list[str]] = field(default_factory=dict)
    #: object -> receptacle (objects in hand are absent)
    where: dict[str, str] = field(default_factory=dict)
    flags: dict[str, set[str]] = field(default_factory=dict)
    lamps_on: set[str] = field(default_factory=set)

    def copy(self) -> State:
        return State(
            location=self.location,
            holding=self.holding,
            opened=set(self.opened),
            contents={k: list(v) for k, v in self.contents.items()},
            where=dict(self.where),
            flags={k: set(v) for k, v in self.flags.items()},
            lamps_on=set(self.lamps_on),
        )


class World:
    """A layout and its state, with the rules that change the state."""

    def __init__(self, layout: Layout, state: State) -> None:
        self.layout = layout
        self.state = state
        self._commands: dict[str, tuple[str, ...]] | None = None

    def copy(self) -> World:
        return World(self.layout, self.state.copy())

    # -- text ----------------------------------------------------------------------------------
    def is_visible(self, receptacle: str) -> bool:
        return not self.layout.openable(receptacle) or receptacle in self.state.opened

    def things_at(self, receptacle: str) -> list[str]:
        lamps = [lamp for lamp, at in self.layout.lamps.items() if at == receptacle]
        return self.state.contents.get(receptacle, []) + lamps

    def describe(self, receptacle: str) -> str:
        if self.layout.openable(receptacle):
            if receptacle not in self.state.opened:
                return f"The {receptacle} is closed."
            return f"The {receptacle} is open. In it, you see {listing(self.things_at(receptacle))}."
        return f"On the {receptacle}, you see {listing(self.things_at(receptacle))}."

    def initial_observation(self) -> str:
        return (
            "You are in the middle of a room. Looking quickly around you, you see "
            f"{listing(self.layout.receptacles)}.\n\nYour task is to: {self.layout.task_text}"
        )

    # -- commands --------------------------------------------------------------------------------
    def commands(self) -> dict[str, tuple[str, ...]]:
        """Admissible command -> operation tuple, for the current state (cached until it changes)."""
        if self._commands is not None:
            return self._commands
        s, cmds = self.state, {}
        here = s.location
        for r in self.layout.receptacles:
            if r != here:
                cmds[f"go to {r}"] = ("go", r)
        if here is not None:
            if self.layout.openable(here):
                if here in s.opened:
                    cmds[f"close {here}"] = ("close", here)
                else:
                    cmds[f"open {here}"] = ("open", here)
            if self.is_visible(here):
                if s.holding is None:
                    for o in s.contents.get(here, []):
                        cmds[f"take {o} from {here}"] = ("take", o, here)
                else:
                    cmds[f"move {s.holding} to {here}"] = ("move", s.holding, here)
            if s.holding is not None:
                kind = OBJECTS[type_of(s.holding)]
                for transform, appliance in APPLIANCE.items():
                    if type_of(here) == appliance and transform in kind.transforms:
                        cmds[f"{transform} {s.holding} with {here}"] = (transform, s.holding, here)
            for lamp, at in self.layout.lamps.items():
                if at == here:
                    cmds[f"use {lamp}"] = ("use", lamp)
            cmds[f"examine {here}"] = ("examine", here)
        cmds["inventory"] = ("inventory",)
        cmds["look"] = ("look",)
        self._commands = cmds
        return cmds

    def step(self, command: str) -> tuple[str, bool]:
        """Apply a command; returns (observation, whether it was admissible)."""
        op = self.commands().get(command)
        if op is None:
            return NOTHING_HAPPENS, False
        self._commands = None
        return self._apply(op), True

    def _apply(self, op: tuple[str, ...]) -> str:
        s = self.state
        kind = op[0]
        if kind == "go":
            s.location = op[1]
            return f"You arrive at {op[1]}. {self.describe(op[1])}"
        if kind == "open":
            s.opened.add(op[1])
            return f"You open the {op[1]}. {self.describe(op[1])}"
        if kind == "close":
            s.opened.discard(op[1])
            return f"You close the {op[1]}."
        if kind == "take":
            obj, rec = op[1], op[2]
            s.contents[rec].remove(obj)
            del s.where[obj]
            s.holding = obj
            return f"You pick up the {obj} from the {rec}."
        if kind == "move":
            obj, rec = op[1], op[2]
            s.contents.setdefault(rec, []).append(obj)
            s.where[obj] = rec
            s.holding = None
            return f"You move the {obj} to the {rec}."
        if kind in FLAG:
            obj, rec = op[1], op[2]
            flags = s.flags.setdefault(obj, set())
            if kind == "heat":
                flags.discard("cool")
            elif kind == "cool":
                flags.discard("hot")
            flags.add(FLAG[kind])  # type: ignore[index]
            return f"You {kind} the {obj} using the {rec}."
        if kind == "use":
            s.lamps_on.add(op[1])
            return f"You turn on the {op[1]}."
        if kind == "examine":
            return self.describe(op[1])
        if kind == "inventory":
            if s.holding is None:
                return "You are not carrying anything."
            return f"You are carrying: a {s.holding}."
        if kind == "look":
            if s.location is None:
                return self.initial_observation().split("\n\n")[0]
            return f"You are facing the {s.location}. Next to it, you see nothing."
        raise AssertionError(f"unhandled operation {op!r}")

    # -- goal ------------------------------------------------------------------------------------
    def satisfying_objects(self) -> list[str]:
        """Objects that already count towards a place goal (right type, flag, receptacle type)."""
        g, s = self.layout.goal, self.state
        flag = g.flag
        return [
            o
            for o, rec in s.where.items()
            if type_of(o) == g.object_type
            and type_of(rec) == g.target_type
            and (flag is None or flag in s.flags.get(o, ()))
        ]

    def goal_reached(self) -> bool:
        g, s = self.layout.goal, self.state
        if g.task_type == "look":
            return (
                s.holding is not None
                and type_of(s.holding) == g.object_type
                and any(self.layout.lamps.get(lamp) == s.location for lamp in s.lamps_on)
            )
        return len(self.satisfying_objects()) >= g.count

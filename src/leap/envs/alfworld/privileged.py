"""The privileged state of an ALFWorld game: the engine's PDDL facts (essential objects and their
locations, receptacles involved) and TextWorld's optimal remaining actions, computed in the game
worker (``engine.GameSession.privileged``), described as every ALFRED-style world is."""

from __future__ import annotations

from typing import Any

from leap.envs.alfred.privileged import describe_state
from leap.envs.base import PrivilegedState


def alfworld_state(facts: dict[str, Any]) -> PrivilegedState:
    return describe_state(facts)

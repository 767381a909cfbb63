"""ALFWorld's programmatic privileged teacher: the shared ALFRED teacher (``leap.envs.alfred``),
which reads the PDDL facts and TextWorld's plan through the same ``privileged.data`` fields."""

from __future__ import annotations

from leap.envs.alfred.teacher import AlfredTeacherPolicy


class AlfworldTeacherPolicy(AlfredTeacherPolicy):
    world = "alfworld"

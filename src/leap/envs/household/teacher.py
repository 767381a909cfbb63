"""The household's programmatic privileged teacher: the shared ALFRED teacher (``leap.envs.alfred``)."""

from __future__ import annotations

from leap.envs.alfred.teacher import AlfredTeacherPolicy


class HouseholdTeacherPolicy(AlfredTeacherPolicy):
    world = "household"

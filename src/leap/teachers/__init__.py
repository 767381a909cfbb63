"""Teachers: privileged correctors of the student's failed episodes."""

from leap.teachers.base import EpisodeCorrection, StepCorrection, Teacher
from leap.teachers.llm import Budget, BudgetExceeded, LLMTeacher
from leap.teachers.programmatic import ProgrammaticTeacher

__all__ = [
    "Budget",
    "BudgetExceeded",
    "EpisodeCorrection",
    "LLMTeacher",
    "ProgrammaticTeacher",
    "StepCorrection",
    "Teacher",
]

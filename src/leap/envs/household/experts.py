"""The household's programmatic policies: the shared ALFRED planner (privileged: it follows the
optimal plan) and searcher (not privileged: observations and public location priors)."""

from __future__ import annotations

from leap.envs.alfred.experts import PlannerPolicy, SearcherPolicy

__all__ = ["PlannerPolicy", "SearcherPolicy"]

"""The embedded household world (ALFWorld-like, offline, procedurally generated).

Modules: ``tasks`` (task ids and splits), ``env`` (the environment), ``world`` and ``planner``
(its rules and optimal plans), ``privileged`` (the privileged state), ``experts`` (planner,
searcher) and ``teacher`` (the programmatic teacher); the ALFRED-style text, priors, searcher and
realizable reasons it shares with ALFWorld are in ``leap.envs.alfred``.
"""

from leap.envs.household.env import HouseholdEnv

__all__ = ["HouseholdEnv"]

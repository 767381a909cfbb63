"""The embedded household world (ALFWorld-like, offline, procedurally generated)."""

from leap.envs.household.env import HouseholdEnv, make_household

__all__ = ["HouseholdEnv", "make_household"]

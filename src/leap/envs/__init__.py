"""Environment protocol and registry."""

from leap.envs.base import (
    ActionSpace,
    EnvError,
    Environment,
    FreeFormRule,
    PrivilegedState,
    Secret,
    StepResult,
    UnknownSplitError,
    UnknownTaskError,
)
from leap.envs.registry import (
    UnknownEnvironmentError,
    env_factory,
    list_envs,
    make_env,
    register_env,
)

__all__ = [
    "ActionSpace",
    "EnvError",
    "Environment",
    "FreeFormRule",
    "PrivilegedState",
    "Secret",
    "StepResult",
    "UnknownEnvironmentError",
    "UnknownSplitError",
    "UnknownTaskError",
    "env_factory",
    "list_envs",
    "make_env",
    "register_env",
]

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
    EnvSpec,
    UnknownEnvironmentError,
    env_factory,
    env_spec,
    list_envs,
    make_env,
    register,
    register_env,
)

__all__ = [
    "ActionSpace",
    "EnvError",
    "EnvSpec",
    "Environment",
    "FreeFormRule",
    "PrivilegedState",
    "Secret",
    "StepResult",
    "UnknownEnvironmentError",
    "UnknownSplitError",
    "UnknownTaskError",
    "env_factory",
    "env_spec",
    "list_envs",
    "make_env",
    "register",
    "register_env",
]

"""Environments by name. Register your own with ``@register_env("name")`` on a factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leap.envs.base import Environment

EnvFactory = Callable[..., Environment]

_REGISTRY: dict[str, EnvFactory] = {}


class UnknownEnvironmentError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register_env(name: str) -> Callable[[EnvFactory], EnvFactory]:
    """Decorator: make ``factory(**kwargs) -> Environment`` available as ``make_env(name)``."""

    def decorate(factory: EnvFactory) -> EnvFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def _load_builtins() -> None:
    # Imported lazily so that `import leap` stays cheap; each module registers itself.
    import leap.envs.alfworld
    import leap.envs.household
    import leap.envs.intercode_bash
    import leap.envs.webshop  # noqa: F401


def env_factory(name: str) -> EnvFactory:
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}; registered: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def make_env(name: str, **kwargs: Any) -> Environment:
    """Build a fresh instance of the environment ``name``."""
    return env_factory(name)(**kwargs)


def list_envs() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)

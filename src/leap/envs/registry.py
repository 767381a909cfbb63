"""Environments by name, as specs: what to import to build one, its experts and its teacher.

A spec names its parts by entry point (``"package.module:Attribute"``), imported only when used,
so listing environments, validating a config or running household never imports another
environment's dependencies (ALFWorld's engine, WebShop's search index). Register your own with
``register(EnvSpec(...))``, or ``@register_env("name")`` on a class or factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leap.privilege import LEVELS, check_level

if TYPE_CHECKING:
    from collections import Counter

    from leap.envs.base import Environment
    from leap.policy import Policy
    from leap.rollout import Episode

EnvFactory = Callable[..., "Environment"]
#: an object, or the entry point ``"module:attribute"`` that names it
EntryPoint = str | Callable[..., Any]


class UnknownEnvironmentError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def load(entry_point: EntryPoint) -> Any:
    """The object an entry point names (an object passes through)."""
    if not isinstance(entry_point, str):
        return entry_point
    module, _, attribute = entry_point.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class EnvSpec:
    """One environment: its factory and the programmatic policies it ships.

    Args:
        name: the registry name (``env.name`` in configs).
        entry_point: the environment class or a factory ``(**options) -> Environment``.
        experts: programmatic policies by name (``leap eval --policy NAME``, ``demos.expert``),
            each a policy class or a factory with no arguments.
        teacher: the programmatic privileged teacher, a class or factory ``(privilege) -> Policy``
            (``teacher.kind: programmatic``, ``demos.expert: teacher``); None if it has none.
        teacher_levels: the privilege levels that teacher implements (see ``leap.privilege``).
        mistakes: a function ``(Episode) -> Counter[str]`` counting an episode's steps by the
            kind of mistake they are (``leap eval``, the test stages and ``leap mistakes`` add
            the counts to their summaries); None if the environment names none.
    """

    name: str
    entry_point: EntryPoint
    experts: Mapping[str, EntryPoint] = field(default_factory=dict)
    teacher: EntryPoint | None = None
    teacher_levels: tuple[int, ...] = LEVELS
    description: str = ""
    mistakes: EntryPoint | None = None

    def make(self, **options: Any) -> Environment:
        """A fresh instance, built with ``options`` (the config's ``env.options``)."""
        return load(self.entry_point)(**options)

    def env_class(self) -> type[Environment]:
        """The environment's class (a factory entry point is called to find it)."""
        target = load(self.entry_point)
        if isinstance(target, type):
            return target
        env = target()
        env.close()
        return type(env)

    def expert_class(self, name: str) -> Callable[[], Policy]:
        """The expert ``name``'s class or factory, without building it (nor importing it)."""
        if name not in self.experts:
            have = ", ".join(sorted(self.experts)) or "none"
            raise ValueError(f"{self.name} has no expert {name!r}; its experts: {have}")
        return lambda: load(self.experts[name])()

    def expert(self, name: str) -> Policy:
        return self.expert_class(name)()

    def expert_privileged(self, name: str) -> bool:
        """Whether the expert ``name`` reads the privileged state (its class attribute; the
        expert is imported, not built)."""
        self.expert_class(name)  # an unknown name is a one-line ValueError
        return bool(getattr(load(self.experts[name]), "privileged", False))

    def mistake_counter(self) -> Callable[[Episode], Counter[str]] | None:
        """The environment's count of an episode's mistakes by kind, if it has one."""
        return None if self.mistakes is None else load(self.mistakes)

    def check_teacher_level(self, level: int) -> int:
        """``level`` if the programmatic teacher has it, else a one-line ValueError."""
        if self.teacher is None:
            raise ValueError(f"{self.name} has no programmatic teacher; use teacher.kind llm or self")
        return check_level(level, self.teacher_levels, f"{self.name}'s programmatic teacher")

    def teacher_policy(self, level: int) -> Policy:
        return load(self.teacher)(self.check_teacher_level(level))


def _alfred_experts(world: str) -> dict[str, EntryPoint]:
    return {
        "planner": f"leap.envs.{world}.experts:PlannerPolicy",
        "searcher": f"leap.envs.{world}.experts:SearcherPolicy",
    }


#: what household and ALFWorld count as mistakes (``leap.envs.alfred.mistakes``)
ALFRED_MISTAKES = "leap.envs.alfred.mistakes:count_mistakes"

_REGISTRY: dict[str, EnvSpec] = {}


def register(spec: EnvSpec) -> EnvSpec:
    """Make ``spec`` available by its name (a later spec of the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


for _spec in (
    EnvSpec(
        "household",
        "leap.envs.household.env:HouseholdEnv",
        _alfred_experts("household"),
        "leap.envs.household.teacher:HouseholdTeacherPolicy",
        description="embedded ALFWorld-like world (offline, procedural)",
        mistakes=ALFRED_MISTAKES,
    ),
    EnvSpec(
        "alfworld",
        "leap.envs.alfworld.env:AlfworldEnv",
        {**_alfred_experts("alfworld"), "handcoded": "leap.envs.alfworld.experts:HandcodedExpertPolicy"},
        "leap.envs.alfworld.teacher:AlfworldTeacherPolicy",
        description="ALFWorld's text games (alfworld package, shared game files)",
        mistakes=ALFRED_MISTAKES,
    ),
    EnvSpec(
        "webshop",
        "leap.envs.webshop.env:WebShopEnv",
        {
            "planner": "leap.envs.webshop.experts:PlannerPolicy",
            "searcher": "leap.envs.webshop.experts:SearcherPolicy",
        },
        "leap.envs.webshop.teacher:ShopTeacherPolicy",
        description="WebShop over the 1000-product catalogue",
    ),
    EnvSpec(
        "intercode-bash",
        "leap.envs.intercode_bash.env:IntercodeBashEnv",
        {"gold": "leap.envs.intercode_bash.experts:GoldPolicy"},
        "leap.envs.intercode_bash.teacher:BashTeacherPolicy",
        teacher_levels=(50, 75, 100),
        description="InterCode's NL2Bash tasks in a bubblewrap sandbox",
    ),
):
    register(_spec)


def register_env(
    name: str,
    *,
    experts: Mapping[str, EntryPoint] | None = None,
    teacher: EntryPoint | None = None,
    teacher_levels: tuple[int, ...] = LEVELS,
) -> Callable[[EnvFactory], EnvFactory]:
    """Decorator: register a class or factory ``(**options) -> Environment`` as ``name``."""

    def decorate(factory: EnvFactory) -> EnvFactory:
        register(EnvSpec(name, factory, dict(experts or {}), teacher, teacher_levels))
        return factory

    return decorate


def env_spec(name: str) -> EnvSpec:
    if name not in _REGISTRY:
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}; registered: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def env_factory(name: str) -> EnvFactory:
    """The class or factory of ``name`` (imported now)."""
    return load(env_spec(name).entry_point)


def make_env(name: str, **options: Any) -> Environment:
    """Build a fresh instance of the environment ``name``."""
    return env_spec(name).make(**options)


def list_envs() -> list[str]:
    return sorted(_REGISTRY)

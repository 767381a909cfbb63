"""Turn a ``--policy`` spec into a Policy: an environment expert, or a model acting as a student."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leap.agents import LLMPolicy, PromptSettings
from leap.envs.registry import env_factory
from leap.models.registry import load_chat_model
from leap.policy import Policy


@dataclass
class ModelOptions:
    """How to run a model-backed policy (ignored for programmatic experts)."""

    prompt: PromptSettings = field(default_factory=PromptSettings)
    temperature: float = 0.0
    max_new_tokens: int = 64
    seed: int = 0
    #: decode the ACTION line as one of the candidates (local models)
    constrain_actions: bool = False
    #: options for the backend: device/dtype/batch_size (transformers) or base_url/api_key_env
    backend: dict[str, Any] = field(default_factory=dict)


def available_experts(env_name: str) -> dict[str, Any]:
    """The programmatic policies an environment ships, by name."""
    env = env_factory(env_name)()
    try:
        return env.experts()
    finally:
        env.close()


def build_policy(spec: str, env_name: str, options: ModelOptions | None = None) -> Policy:
    """``spec`` is an expert name of the environment, a model registry name, a local model or
    LoRA adapter directory, or ``openai:MODEL``."""
    experts = available_experts(env_name)
    if spec in experts:
        return experts[spec]()
    options = options or ModelOptions()
    model = load_chat_model(spec, **options.backend)
    return LLMPolicy(
        model,
        prompt=options.prompt,
        temperature=options.temperature,
        max_new_tokens=options.max_new_tokens,
        seed=options.seed,
        constrain_actions=options.constrain_actions,
        name=spec,
    )

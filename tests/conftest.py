from __future__ import annotations

import pytest

from leap.envs import make_env
from leap.envs.household import HouseholdEnv
from leap.models.registry import resolve_model_path


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    """The tiny random Llama (SmolLM2 tokenizer), built once into the cache."""
    return resolve_model_path("tiny-random")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from leap.models.transformers_backend import TransformersChatModel

    return TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", batch_size=8)


@pytest.fixture
def household() -> HouseholdEnv:
    env = make_env("household")
    assert isinstance(env, HouseholdEnv)
    return env

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


class AttentionSpy:
    """Records the blocks of ``leap.models.attention_kernels.attention_kernels`` entered (device,
    cudnn) and the scaled-dot-product attention calls made outside every such block."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, bool]] = []
        self.inside = 0
        self.calls_outside = 0
        self.calls_inside = 0


@pytest.fixture
def attention_spy(monkeypatch) -> AttentionSpy:
    """Spy on leap's attention-kernel blocks and on every attention call (CPU-runnable: the
    blocks' effect on a GPU is checked by tests of ``attention_kernels`` itself)."""
    import contextlib

    import torch

    from leap.models import attention_kernels as module
    from leap.models import transformers_backend

    spy = AttentionSpy()
    real_block, real_sdpa = module.attention_kernels, torch.nn.functional.scaled_dot_product_attention

    @contextlib.contextmanager
    def block(device: str, cudnn: bool):
        spy.blocks.append((device, cudnn))
        spy.inside += 1
        try:
            with real_block(device, cudnn):
                yield
        finally:
            spy.inside -= 1

    def sdpa(*args, **kwargs):
        if spy.inside:
            spy.calls_inside += 1
        else:
            spy.calls_outside += 1
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(module, "attention_kernels", block)
    monkeypatch.setattr(transformers_backend, "attention_kernels", block)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    return spy


@pytest.fixture
def value_reads():
    """A dispatch mode (a class; ``with value_reads() as reads:``) that records in ``reads.names``
    every operation reading a tensor's values back to the host, which on a GPU waits for the
    device and which a CUDA graph cannot record: ``item`` and ``bool``, outputs whose size depends
    on values, and indexing with a boolean mask (which finds its true positions first)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    # under inference mode ``bool`` reaches the dispatcher as is_nonzero, elsewhere as
    # _local_scalar_dense
    reading = (
        "aten::_local_scalar_dense",
        "aten::is_nonzero",
        "aten::item",
        "aten::equal",
        "aten::nonzero",
        "aten::masked_select",
    )
    indexing = ("aten::index", "aten::index_put_", "aten::index_put")

    class ValueReads(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name
            indices = args[1] if name in indexing else ()
            if name in reading or any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ()
            ):
                self.names.append(name)
            return func(*args, **(kwargs or {}))

    return ValueReads

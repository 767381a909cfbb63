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


@pytest.fixture
def cpu_graph(value_reads):
    """A CUDA graph's stand-in on a CPU: ``record(function)`` runs ``function`` once as a stream
    capture would (transformers' capture branches; a value read back fails), keeping every
    operator it dispatches with its very arguments, and returns a replay that runs those
    operators again, and no Python: each computed output is written into the tensor recorded
    for it (the graph's fixed memory), and Python values (sizes, counters, slices) stay as they
    were at recording. What a real graph would freeze is frozen here too, so a step that
    depends on anything but its tensors' contents replays wrongly, as it would on a GPU."""
    import torch
    import transformers.utils.import_utils as import_utils
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Recorder(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            self.calls.append((func, args, kwargs, out))
            return out

    def record(function):
        recorder = Recorder()
        with pytest.MonkeyPatch.context() as capturing, value_reads() as reads:
            capturing.setattr(import_utils, "is_cuda_stream_capturing", lambda: True)
            with recorder:
                output = function()
        assert reads.names == [], f"host synchronisations under capture: {reads.names}"

        def storages(tree) -> list[int]:
            return [t.untyped_storage().data_ptr() for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]

        def aliasing(func, args, kwargs, out) -> bool:
            """An operator that wrote nothing and whose outputs are its inputs' memory (a view;
            ``to`` or ``reshape`` that had nothing to copy): the memory it aliases is rewritten
            in place by whatever produced it, so there is nothing to redo."""
            inputs, outputs = set(storages((args, kwargs))), storages(out)
            return not func._schema.is_mutable and bool(outputs) and set(outputs) <= inputs

        calls = [call for call in recorder.calls if not aliasing(*call)]

        def replay():
            for func, args, kwargs, out in calls:
                fresh = func(*args, **kwargs)
                for kept, new in zip(tree_leaves(out), tree_leaves(fresh), strict=True):
                    if isinstance(kept, torch.Tensor) and kept.data_ptr() != new.data_ptr():
                        kept.copy_(new)
            return output

        replay.calls = calls
        return replay

    return record

"""What the benchmarks share: the device's measured matrix-multiply peak, model FLOPs, a randomly
initialised copy of a model (the same shapes and kernels, no weights to carry), switching one of
leap's savings off to measure it, counting a step's operators, and writing a profile's tables."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: operators that compute nothing on the device: allocations, a view that aten does not mark as
#: one, and reading a value back (a wait)
NOT_COMPUTING = frozenset(
    {
        "empty",
        "empty_like",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "_unsafe_view",
        "_local_scalar_dense",
        "lift_fresh",
    }
)


class OperatorCount(TorchDispatchMode):
    """Counts, by name, the aten operators that compute, views and allocations left out
    (``with OperatorCount() as ops: ...``, then ``ops.counts``). On a GPU each is about one kernel
    launch, each with its host-side cost, so the count says on any device, a CPU included, how much
    launching a step asks of the host."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in NOT_COMPUTING:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, *, size: int | None = None, seconds: float = 2.0) -> float:
    """FLOP/s of square matrix multiplies on ``device`` in ``dtype``: the measured ceiling that
    model FLOPs utilisation is a fraction of (the best of several timed batches)."""
    size = size or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        repeats = 10 if device.startswith("cuda") else 2
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = max(best, repeats * 2 * size**3 / (time.perf_counter() - start))
    return best


def linear_parameters(config) -> dict[str, int]:
    """Parameters of a decoder's matrix multiplies per token: the layers' and the LM head's."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", None)
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv_heads = kv_heads or heads
    attention = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2
    return {"layers": layers * (attention + 3 * d * ff), "head": d * config.vocab_size}


def attention_flops(config, context: float) -> float:
    """Forward FLOPs per token of attention scores and weighted values over ``context`` keys."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 4 * config.num_hidden_layers * heads * head_dim * context


def random_copy(model_dir: str, dtype: torch.dtype = torch.float32) -> str:
    """A randomly initialised model with ``model_dir``'s config and tokenizer, saved to a
    temporary directory: only the config and tokenizer need to exist there."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="leap-random-"))
    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return str(out)


def model_arguments(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser with the arguments every benchmark takes: the model and the device."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="registry name or model directory")
    parser.add_argument("--random-weights", action="store_true", help="a random model of --model's shapes")
    parser.add_argument("--device", default="cpu")
    return parser


def model_directory(args: argparse.Namespace) -> str:
    """The model directory the arguments name (a random copy with ``--random-weights``)."""
    from leap.models.registry import resolve_model_path

    path = resolve_model_path(args.model)
    return random_copy(path) if args.random_weights else path


@contextmanager
def switched_off(flag: tuple[Any, str | tuple[str, ...]] | None) -> Iterator[None]:
    """Set the boolean attribute(s) ``flag`` = (object, name or names) to False for the block (an
    ablation: some of leap's savings off), True again after it; None changes nothing."""
    if flag is None:
        yield
        return
    owner, names = flag
    names = (names,) if isinstance(names, str) else names
    for name in names:
        setattr(owner, name, False)
    try:
        yield
    finally:
        for name in names:
            setattr(owner, name, True)


def write_profile(path: Path, title: str, prof: Any, steps: int = 1, host: Any = None) -> None:
    """Write a PyTorch profile's operators that took the most host and device time (and its
    kernel launches per step, over ``steps`` recorded steps) to ``path``; with ``host`` (a
    ``cProfile.Profile``) also the Python functions that took the most time, where host-side work
    that issues no operator (tokenising, a logits processor's loops) shows."""
    import io
    import pstats

    events = prof.key_averages()
    launches = sum(e.count for e in events if "LaunchKernel" in e.key) / steps
    text = [f"{title}; {launches:.0f} kernel launches per step"]
    for key in ("self_cpu_time_total", "self_device_time_total"):
        text.append(events.table(sort_by=key, row_limit=25))
    if host is not None:
        stream = io.StringIO()
        pstats.Stats(host, stream=stream).sort_stats("cumulative").print_stats(45)
        text.append(stream.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


@contextmanager
def profiled(folder: str | None, name: str) -> Iterator[None]:
    """Record the block with the PyTorch profiler (host and, on CUDA, device) and cProfile, and
    write both to ``folder/profile-NAME.txt``; nothing where ``folder`` is None."""
    if not folder:
        yield
        return
    import cProfile

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    host = cProfile.Profile()
    with profile(activities=activities) as prof:
        host.enable()
        try:
            yield
        finally:
            host.disable()
    write_profile(Path(folder) / f"profile-{name}.txt", name, prof, host=host)

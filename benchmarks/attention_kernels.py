"""Attention kernels on leap's shapes: what each of PyTorch's scaled-dot-product kernels costs when
the shape changes at every call (as in leap's training and decoding) and when it repeats.

Two workloads, with a model's attention shapes (SmolLM2-135M's by default: 9 heads of 64, keys
and values repeated from 3 heads as transformers does under a mask):

  decode  one query per row over a growing key cache: --rows rows (100: a lockstep rollout), a
          left-padding mask, one more key at every call (a decoding step)
  train   --train-rows packed rows (16: a GPU micro-batch) of about --train-length tokens with a
          causal tree mask, forward and backward, a new length at every call (a new micro-batch)

Each runs under every kernel choice: "torch" (PyTorch's own order: cuDNN first on H100, H200 and
B200 with cuDNN newer than 9.15), "leap" (leap.models.attention_kernels: cuDNN left out), and each
kernel alone (cudnn, efficient, flash, math; one that cannot take the inputs says so). For each:
milliseconds per call with a new shape every call and with one shape repeated, and the kernel
PyTorch picks (torch._fused_sdp_choice). Ratios are against "torch".

    python benchmarks/attention_kernels.py --device cuda
    python benchmarks/attention_kernels.py --device cpu --rows 8 --train-rows 2 --train-length 128 --calls 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from _hardware import synchronize
from rich.console import Console
from rich.table import Table
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

from leap.models.attention_kernels import attention_kernels

#: the kernels that may be chosen alone, by name
KERNELS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "math": SDPBackend.MATH,
}


@contextmanager
def choice(name: str, device: str) -> Iterator[None]:
    """The kernels allowed in the block: PyTorch's order, leap's, or one kernel."""
    if name == "torch":
        context = nullcontext()
    elif name == "leap":
        context = attention_kernels(device, cudnn=False)
    else:
        context = sdpa_kernel([KERNELS[name]])
    with context:
        yield


def picked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> str:
    """The kernel PyTorch would run for these inputs under the current choice."""
    try:
        index = torch._fused_sdp_choice(q, k, v, attn_mask=mask)
    except RuntimeError:
        return "none"
    names = {int(backend): name for name, backend in KERNELS.items()}
    return names.get(int(index), str(index))


def decode_inputs(args: argparse.Namespace, length: int) -> tuple[torch.Tensor, ...]:
    """One decoding step's query, keys, values and left-padding mask at ``length`` keys."""
    shape = (args.rows, args.heads, length, args.head_dim)
    q = torch.randn(args.rows, args.heads, 1, args.head_dim, device=args.device, dtype=args.dtype)
    k = torch.randn(shape, device=args.device, dtype=args.dtype)
    v = torch.randn(shape, device=args.device, dtype=args.dtype)
    starts = torch.randint(0, length // 4, (args.rows,), device=args.device)
    mask = (torch.arange(length, device=args.device)[None, :] >= starts[:, None])[:, None, None, :]
    return q, k, v, mask


def train_inputs(args: argparse.Namespace, length: int) -> tuple[torch.Tensor, ...]:
    """One micro-batch's queries, keys and values (with gradients) and causal mask with right
    padding, rows of up to ``length`` tokens."""
    shape = (args.train_rows, args.heads, length, args.head_dim)
    q, k, v = (torch.randn(shape, device=args.device, dtype=args.dtype, requires_grad=True) for _ in range(3))
    ends = torch.randint(length // 2, length + 1, (args.train_rows,), device=args.device)
    positions = torch.arange(length, device=args.device)
    causal = positions[:, None] >= positions[None, :]
    real = positions[None, :] < ends[:, None]
    mask = causal[None] & real[:, None, :] & real[:, :, None]
    mask |= torch.eye(length, dtype=torch.bool, device=args.device)  # padding attends to itself
    return q, k, v, mask[:, None]


def decode_call(inputs: tuple[torch.Tensor, ...]) -> None:
    q, k, v, mask = inputs
    scaled_dot_product_attention(q, k, v, attn_mask=mask)


def train_call(inputs: tuple[torch.Tensor, ...]) -> None:
    q, k, v, mask = inputs
    scaled_dot_product_attention(q, k, v, attn_mask=mask).float().square().mean().backward()


def time_calls(
    args: argparse.Namespace,
    make: Callable[[argparse.Namespace, int], tuple[torch.Tensor, ...]],
    call: Callable[[tuple[torch.Tensor, ...]], None],
    lengths: list[int],
) -> float:
    """Median milliseconds of ``call`` over inputs of ``lengths`` (inputs built outside the
    timing)."""
    times = []
    for length in lengths:
        inputs = make(args, length)
        synchronize(args.device)
        start = time.perf_counter()
        call(inputs)
        synchronize(args.device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default="auto", help="auto: bf16 on CUDA, fp32 on CPU; or bf16, fp16, fp32"
    )
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--rows", type=int, default=100, help="decode: rows of the batch")
    parser.add_argument("--length", type=int, default=1000, help="decode: keys at the first call")
    parser.add_argument("--train-rows", type=int, default=16, help="train: rows of the micro-batch")
    parser.add_argument(
        "--train-length", type=int, default=600, help="train: tokens per row at the first call"
    )
    parser.add_argument("--calls", type=int, default=20, help="timed calls per workload and choice")
    parser.add_argument(
        "--choices", default="torch,leap,cudnn,efficient,flash,math", help="comma-separated kernel choices"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    auto = "bf16" if args.device.startswith("cuda") else "fp32"
    args.dtype = dtypes[auto if args.dtype == "auto" else args.dtype]
    torch.manual_seed(0)

    workloads = {
        "decode": (decode_inputs, decode_call, args.length),
        "train": (train_inputs, train_call, args.train_length),
    }
    choices = args.choices.split(",")
    results: dict[str, dict[str, dict]] = {}
    for workload, (make, call, first) in workloads.items():
        for j, name in enumerate(choices):
            # lengths interleaved between the choices: each choice meets lengths none has used
            # before (a plan cached by an earlier choice would hide what a new shape costs), over
            # the same range (comparable costs)
            new = [first + i * len(choices) + j for i in range(args.calls + 1)]
            row: dict = {}
            with choice(name, args.device):
                row["kernel"] = picked(*make(args, new[0]))
                try:
                    time_calls(args, make, call, [new[0]])  # the choice's first call
                    row["new_shape_ms"] = time_calls(args, make, call, new[1:])
                    row["same_shape_ms"] = time_calls(args, make, call, [new[-1]] * args.calls)
                except RuntimeError as exc:
                    message = str(exc).splitlines()[0]
                    unfit = "No viable backend" in message
                    row["error"] = "cannot take these inputs" if unfit else message[:80]
            results.setdefault(workload, {})[name] = row
            print(workload, name, row, flush=True)
            if args.json:  # what is done so far survives a time limit
                Path(args.json).write_text(json.dumps({"args": _plain(args), "results": results}))

    gpu = ""
    if args.device.startswith("cuda"):
        gpu = f" ({torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()})"
    title = (
        f"attention on {args.device}{gpu}"
        + f", {str(args.dtype).removeprefix('torch.')}, {args.heads} heads of {args.head_dim}; "
        f"decode: {args.rows} rows from {args.length} keys; train: {args.train_rows} rows from "
        f"{args.train_length} tokens, forward and backward; medians of {args.calls} calls"
    )
    table = Table(title=title, title_justify="left")
    for col in (
        "workload",
        "choice",
        "kernel",
        "new shape ms",
        "same shape ms",
        "new / same",
        "new vs torch",
    ):
        table.add_column(col, justify="right")
    for workload, rows in results.items():
        base = rows.get("torch", {}).get("new_shape_ms")
        for name, row in rows.items():
            if "error" in row:
                table.add_row(workload, name, row["kernel"], row["error"], "", "", "")
                continue
            new, same = row["new_shape_ms"], row["same_shape_ms"]
            table.add_row(
                workload,
                name,
                row["kernel"],
                f"{new:.3f}",
                f"{same:.3f}",
                f"{new / same:.2f}x",
                f"{base / new:.2f}x" if base else "-",
            )
    Console(width=150).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": _plain(args), "results": results}, indent=2))


def _plain(args: argparse.Namespace) -> dict:
    return {key: str(value) if isinstance(value, torch.dtype) else value for key, value in vars(args).items()}


if __name__ == "__main__":
    main()

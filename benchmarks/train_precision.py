"""LoRA SFT on CPU: bf16 autocast vs fp32, on the same packed rows and the same steps.

Trains the same adapter twice from the same seed on an exported SFT file (for example a run's
``iter_0/train/sft.jsonl``), once with ``bf16`` on and once off, and prints the seconds per
optimizer step of each, their ratio and the losses. ``train.bf16: auto`` turns bf16 on where
the CPU has AVX512-BF16 or AMX; this says what that buys on the machine at hand.

    python benchmarks/train_precision.py runs/household-demo/iter_0/train/sft.jsonl --steps 6
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from leap.models.registry import resolve_model_path
from leap.models.transformers_backend import cpu_has_fast_bf16
from leap.train import TrainSettings, train_adapter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="an exported SFT JSONL file")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()

    base = str(resolve_model_path(args.model))
    results = {}
    with tempfile.TemporaryDirectory(prefix="leap-bench-") as work:
        for bf16 in (True, False):
            settings = TrainSettings(
                lora_r=args.rank,
                lora_alpha=2 * args.rank,
                learning_rate=1e-3,
                max_steps=args.steps,
                batch_size=args.batch_size,
                bf16=bf16,
                device="cpu",
            )
            results[bf16] = train_adapter(base, args.data, Path(work) / f"bf16-{bf16}", settings)

    fast = cpu_has_fast_bf16()
    table = Table(title=f"{args.steps} LoRA SFT steps on {args.data} (CPU with fast bf16: {fast})")
    for column in ("precision", "s/step", "first loss", "last loss"):
        table.add_column(column)
    for bf16, metrics in results.items():
        curve = metrics["loss_curve"]
        table.add_row(
            "bf16 autocast" if bf16 else "fp32",
            f"{metrics['train_runtime_s'] / metrics['steps']:.2f}",
            f"{curve[0]['loss']:.4f}",
            f"{curve[-1]['loss']:.4f}",
        )
    console = Console()
    console.print(table)
    ratio = results[False]["train_runtime_s"] / results[True]["train_runtime_s"]
    console.print(f"fp32 / bf16 time: {ratio:.2f}x")


if __name__ == "__main__":
    main()

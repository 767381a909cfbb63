"""Training throughput of leap's own SFT path against the device's measured matrix-multiply peak.

The same rows (packed household transcripts: whole demonstrations and the corrections of some of
them, or a run's training file), the same LoRA settings and the same seed go through
``leap.train.train_adapter`` once per engine, in one run:

  trl       TRL's loss (full logits, entropy and accuracy every step), a dense 4D mask, one
            packed row per micro-batch: the engine before issue 18
  leap      the loss head only at labelled positions (and a fused AdamW on CUDA)
  leap-flex leap's loss with flex attention over the step's rows in one sequence (a block
            mask; CUDA only)
  leap-concat   leap with the step's rows in one sequence under sdpa (a dense tree mask): one
            micro-batch per optimizer step
  leap-batched  leap with all the step's rows in one micro-batch, side by side in lanes as wide
            as the longest row (train.micro_batch_size = --batch-size; train.lanes)
  leap-batched-padded   leap-batched with each row padded to the longest instead (lanes off)
  leap-batched-hostmask leap-batched with the dense tree mask built on the host and copied to
            the device (before PrefixTreeCollator.mask_on_device; the same on a CPU)
  leap-batched-syncs    leap-batched with the labelled positions found on the device (a boolean
            index) and each micro-batch's loss checked for NaN, each reading a value back
            mid-step (before leap.train.SYNC_FREE_STEPS; on a CPU that costs nothing)
  leap-compile  leap with every decoder layer compiled by torch.compile
  leap-concat-compile, leap-batched-compile, leap-batched-bf16-compile   with compiled layers
  leap-batched-compile-graphs, leap-batched-bf16-compile-graphs   compiled layers replayed as CUDA
            graphs on a GPU, lanes padded to a multiple of 256 tokens (train.compile: graphs; the
            JSON's cudagraph_skips counts compiled graphs run without one: all on a CPU)
  leap-batched-bf16-compile-graphs-blocking   the bf16 graphs with the batch's tensors copied to
            the device by the trainer from ordinary host memory, each copy waiting for the device
            (before PrefixTreeCollator.copy_ahead; the same on a CPU)
  leap-batched-bf16-compile-graphs-logsync   the bf16 graphs logging every step and waiting for
            the device at every step's end to time it (before leap.train.GPU_LOGGING_STEPS and
            EVENT_TIMING: every other engine logs every 10th step on a GPU and times steps with
            CUDA events; on a CPU all log every step)
  leap-treemask leap with a dense mask on every row, plain causal rows too (as before the causal
            shortcut of leap.packing.PrefixTreeCollator)
  leap-torchdropout     leap with torch's dropout on CPU, which draws a random number per
            element (before leap.sparse_dropout)
  leap-castweights      leap in bf16 with the frozen weights kept in fp32, cast by autocast at
            every use (before leap.train.frozen_weights_to_bf16)
  leap-nodropout        leap without LoRA dropout (a change of recipe: what dropout costs)
  leap-fp32, leap-bf16, leap-batched-fp32, leap-batched-bf16   leap and leap-batched in fp32 or in
            bf16 autocast (the others take train.bf16's default, auto: see leap.train._use_bf16)
  leap-batched-tf32     leap-batched in fp32 with TF32 matrix multiplies (CUDA only; TRL's tf32)
  leap-batched-bf16-cudnn   leap-batched-bf16 with cuDNN's attention kernels allowed where
            PyTorch tries them first (H100, H200, B200; leap.models.attention_kernels leaves
            them out)
  dpo       TRL's DPO on preference pairs built from the same episodes

Tokens/s are steady-state (after the first, compiling step). Model FLOPs per token count the
matrix multiplies of a LoRA step: 4 x (layer and LM-head parameters) for the forward and the
input gradients of frozen weights (the adapters add under 1 %), plus attention over the mean
causal context; the same count for every engine, so MFU ratios are throughput ratios. The peak
is measured here (square bf16 multiplies; fp32 on CPUs without bf16 instructions).

``--count-ops`` counts the aten operators of each engine's last step that compute (views and
allocations left out; not for compiled layers): on a GPU about one kernel launch each, the
host-side work that bounds a small model's step there, counted the same on a CPU (with
``--torch-dropout`` every engine's step has a GPU's operators: torch's dropout, not the CPU's).

    python benchmarks/train_throughput.py --device cpu --steps 6
    python benchmarks/train_throughput.py --device cuda --engines trl,leap,leap-flex --random-weights
    python benchmarks/train_throughput.py --model tiny-random --episodes 4 --steps 2   # CI size
    python benchmarks/train_throughput.py --random-weights --engines leap-batched-fp32,leap-batched-bf16 \
        --batch-size 16 --episodes 60 --steps 3 --count-ops
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from _hardware import (
    OperatorCount,
    attention_flops,
    linear_parameters,
    matmul_peak,
    model_arguments,
    model_directory,
    switched_off,
    synchronize,
    write_profile,
)
from rich.console import Console
from rich.table import Table

import leap.train
from leap.agents import PromptSettings
from leap.builders import build_policy
from leap.data import dpo_rows, make_sample, sft_rows
from leap.envs import make_env
from leap.io import atomic_write_jsonl, read_jsonl
from leap.models.transformers_backend import cpu_has_fast_bf16
from leap.packing import PrefixTreeCollator
from leap.rollout import run_episodes
from leap.train import TrainSettings, train_adapter

TURNS = PromptSettings(
    style="student", layout="turns", history_steps=20, max_observation_chars=600, list_actions=False
)
#: the candidate for the GPU training target: every step's rows in lanes, bf16, compiled layers
#: replayed as CUDA graphs (its ablations below switch one of its savings off)
GRAPHS_BF16 = {"engine": "leap", "micro_batch_size": "step", "bf16": True, "compile": "graphs"}
ENGINES = {
    "trl": {"engine": "trl"},
    "leap": {"engine": "leap"},
    "leap-flex": {"engine": "leap", "attention": "flex"},
    "leap-concat": {"engine": "leap", "concatenate_rows": True},
    "leap-compile": {"engine": "leap", "compile": True},
    "leap-concat-compile": {"engine": "leap", "concatenate_rows": True, "compile": True},
    "leap-batched": {"engine": "leap", "micro_batch_size": "step"},
    "leap-batched-padded": {"engine": "leap", "micro_batch_size": "step", "lanes": False},
    "leap-batched-hostmask": {"engine": "leap", "micro_batch_size": "step"},
    "leap-batched-syncs": {"engine": "leap", "micro_batch_size": "step"},
    "leap-batched-compile": {"engine": "leap", "micro_batch_size": "step", "compile": True},
    "leap-batched-bf16-compile": {
        "engine": "leap",
        "micro_batch_size": "step",
        "bf16": True,
        "compile": True,
    },
    "leap-batched-compile-graphs": {"engine": "leap", "micro_batch_size": "step", "compile": "graphs"},
    "leap-batched-bf16-compile-graphs": GRAPHS_BF16,
    "leap-batched-bf16-compile-graphs-blocking": GRAPHS_BF16,
    "leap-batched-bf16-compile-graphs-logsync": {**GRAPHS_BF16, "logging_steps": 1},
    "leap-fp32": {"engine": "leap", "bf16": False},
    "leap-bf16": {"engine": "leap", "bf16": True},
    "leap-batched-fp32": {"engine": "leap", "micro_batch_size": "step", "bf16": False},
    "leap-batched-bf16": {"engine": "leap", "micro_batch_size": "step", "bf16": True},
    "leap-batched-bf16-cudnn": {
        "engine": "leap",
        "micro_batch_size": "step",
        "bf16": True,
        "cudnn_attention": True,
    },
    "leap-batched-tf32": {
        "engine": "leap",
        "micro_batch_size": "step",
        "bf16": False,
        "extra": {"tf32": True},
    },
    "leap-treemask": {"engine": "leap"},
    "leap-torchdropout": {"engine": "leap"},
    "leap-castweights": {"engine": "leap"},
    "leap-nodropout": {"engine": "leap", "lora_dropout": 0.0},
    "dpo": {"rule": "dpo"},
}
#: engines that switch one of leap's savings off (an object's flag), to measure what it saves
ABLATIONS = {
    "leap-treemask": (PrefixTreeCollator, "causal_shortcut"),
    "leap-batched-hostmask": (PrefixTreeCollator, "mask_on_device"),
    "leap-batched-bf16-compile-graphs-blocking": (PrefixTreeCollator, "copy_ahead"),
    "leap-batched-syncs": (leap.train, "SYNC_FREE_STEPS"),
    "leap-batched-bf16-compile-graphs-logsync": (leap.train, "EVENT_TIMING"),
    "leap-torchdropout": (leap.train, "SPARSE_DROPOUT_ON_CPU"),
    "leap-castweights": (leap.train, "BF16_FROZEN_WEIGHTS"),
}


def household_rows(n_episodes: int, horizon: int, corrected_every: int, folder: Path) -> tuple[Path, Path]:
    """SFT and DPO training files from planner demonstrations on household: every episode as a
    transcript row; every ``corrected_every``-th episode also corrected at each step to another
    admissible action (branches on its transcript, and the preference pairs)."""
    episodes = run_episodes(
        lambda: make_env("household"),
        [f"train/{i:04d}" for i in range(1, n_episodes + 1)],
        build_policy("planner", "household"),
        horizon=horizon,
        show_progress=False,
    )
    demos, corrections = [], []
    for k, e in enumerate(episodes):
        for t, s in enumerate(e.steps):
            demos.append(
                make_sample(
                    e, t, iteration=0, teacher="expert", reason=s.reason, action=s.action, settings=TURNS
                )
            )
            other = next((c for c in s.candidates.get("choices", []) if c != s.action), None)
            if k % corrected_every == 0 and other is not None:
                corrections.append(
                    make_sample(
                        e,
                        t,
                        iteration=1,
                        teacher="expert",
                        reason=s.reason,
                        action=s.action,
                        rejected=f"REASON: {s.reason}\nACTION: {other}",
                        settings=TURNS,
                    )
                )
    sft, dpo = folder / "sft.jsonl", folder / "dpo.jsonl"
    atomic_write_jsonl(sft, sft_rows(demos) + sft_rows(corrections))
    atomic_write_jsonl(dpo, dpo_rows(corrections))
    return sft, dpo


def pair_tokens(model_dir: str, dpo_file: Path) -> float:
    """Mean tokens of a preference pair (prompt with the chosen reply, prompt with the rejected)."""
    from leap.models.transformers_backend import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    sizes = []
    for row in read_jsonl(dpo_file):
        for side in ("chosen", "rejected"):
            text = tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=False)
            sizes.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return 2 * sum(sizes) / max(len(sizes), 1)


def packed_rows(model_dir: str, sft_file: Path) -> list[dict]:
    """The packed sequences leap trains on (``leap.train._packed_sft_dataset``)."""
    from datasets import load_dataset

    from leap.models.transformers_backend import load_tokenizer
    from leap.train import _packed_sft_dataset

    dataset = load_dataset("json", data_files=str(sft_file), split="train")
    return [dict(r) for r in _packed_sft_dataset(dataset, load_tokenizer(model_dir), 2048)]


def rows_from_lists(collate: PrefixTreeCollator, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``PrefixTreeCollator._rows`` as it was before it filled arrays: each batch row's values
    gathered in Python lists, padded, and handed to ``torch.tensor`` as nested lists."""
    names = ("input_ids", "labels", "position_ids", "seq", "branch", "anchor")
    rows = []
    for group in collate._groups(features):
        row: dict[str, list[int]] = {name: [] for name in names}
        for s, f in enumerate(group):
            offset, n = len(row["input_ids"]), len(f["input_ids"])
            for name in ("input_ids", "labels", "position_ids", "branch"):
                row[name] += f[name]
            row["seq"] += [s] * n
            row["anchor"] += [offset + a for a in f["anchor"]]
        rows.append(row)
    width = max(len(r["input_ids"]) for r in rows)
    width = -(-width // collate.multiple_of) * collate.multiple_of
    fill = dict(input_ids=collate.pad_token_id, labels=-100, position_ids=0, seq=-1, branch=-1, anchor=0)
    return {
        name: torch.tensor([r[name] + [fill[name]] * (width - len(r[name])) for r in rows]) for name in names
    }


def collation_ms(model_dir: str, sft_file: Path, rows: int, device: str, draws: int = 20) -> dict[str, float]:
    """Milliseconds to collate a micro-batch of ``rows`` packed rows side by side in lanes and
    have it on ``device``, the dense tree mask built on the host and copied (``host``) or built
    on the device from the rows' indices (``device``, leap's way), the ways taking turns over the
    same draws (seed 0); medians. On a CPU both ways are the same work; ``rows`` is the host's
    part that stays (the rows' tensors without a mask), ``rows_lists`` the same filled from
    Python lists as before (:func:`rows_from_lists`: the same tensors, checked here)."""
    import random

    from leap.models.transformers_backend import load_tokenizer

    packed = packed_rows(model_dir, sft_file)
    pad = load_tokenizer(model_dir).pad_token_id
    draw = random.Random(0)
    times: dict[str, list[float]] = {"host": [], "device": [], "rows": [], "rows_lists": []}
    for _ in range(draws):
        batch = draw.sample(packed, min(rows, len(packed)))
        made_rows = []
        for way in times:
            collate = PrefixTreeCollator(pad, lanes=True, device=device)
            collate.mask_on_device = way == "device"
            collate_rows = partial(rows_from_lists, collate) if way == "rows_lists" else collate._rows
            synchronize(device)
            start = time.perf_counter()
            made = collate_rows(batch) if way.startswith("rows") else collate(batch)
            on_device = {k: v.to(device) for k, v in made.items()}
            synchronize(device)
            times[way].append(1000 * (time.perf_counter() - start))
            if way.startswith("rows"):
                made_rows.append(made)
            else:
                assert on_device["attention_mask"].device.type == torch.device(device).type
        arrays, lists = made_rows
        assert arrays.keys() == lists.keys() and all(torch.equal(arrays[k], lists[k]) for k in arrays)
    return {way: statistics.median(t) for way, t in times.items()}


def flops_estimate_ms(model_dir: str, rows: int, draws: int = 20) -> dict[str, float]:
    """Milliseconds of host time the trainer spends per micro-batch on its FLOPs estimate (for
    ``total_flos``), LoRA r 16 on every linear layer: transformers' (the model's parameters
    counted at every micro-batch) and the leap engine's trainer's (counted once); the ways
    taking turns, medians."""
    from types import SimpleNamespace

    import trl
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, Trainer

    from leap.train import _leap_sft_trainer

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    leap_trainer = SimpleNamespace(model=model, _counted_parameters=None)
    ways = {
        "transformers": partial(Trainer.floating_point_ops, SimpleNamespace(model=model)),
        "leap": partial(_leap_sft_trainer(trl).floating_point_ops, leap_trainer),
    }
    inputs = {"input_ids": torch.zeros(rows, 600, dtype=torch.long)}
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(draws):
        for way, estimate in ways.items():
            start = time.perf_counter()
            estimate(inputs)
            times[way].append(1000 * (time.perf_counter() - start))
    return {way: statistics.median(t) for way, t in times.items()}


def padding_shares(model_dir: str, sft_file: Path, rows: int, draws: int = 200) -> dict[str, float]:
    """The share of computed positions that are padding, and the attention pairs computed per
    pair a row needs, for micro-batches of ``rows`` packed rows drawn at random (seed 0) from
    ``sft_file``: each row padded to the longest, or side by side in lanes (``leap.packing``).
    Also how many distinct micro-batch shapes (lanes, width) the first 30 and all draws take, in
    lanes as wide as the longest row and padded as ``train.compile: graphs`` pads them (each new
    shape is a CUDA graph to record)."""
    import random

    from leap.packing import fill_lanes

    lengths = [len(r["input_ids"]) for r in packed_rows(model_dir, sft_file)]
    draw = random.Random(0)
    real = padded = lanes = pairs = padded_pairs = lane_pairs = 0
    shapes: dict[str, list[tuple[int, int]]] = {"lanes": [], "graph_lanes": []}
    multiple = leap.train.GRAPH_WIDTH_MULTIPLE
    for _ in range(draws):
        batch = draw.sample(lengths, min(rows, len(lengths)))
        width = max(batch)
        n_lanes = len(fill_lanes(batch, width))
        real, padded, lanes = real + sum(batch), padded + len(batch) * width, lanes + n_lanes * width
        pairs += sum(n * n for n in batch)
        padded_pairs, lane_pairs = padded_pairs + len(batch) * width**2, lane_pairs + n_lanes * width**2
        graph_width = -(-width // multiple) * multiple
        shapes["lanes"].append((n_lanes, width))
        shapes["graph_lanes"].append((len(fill_lanes(batch, graph_width)), graph_width))
    return {
        "rows": rows,
        "padded_padding_share": 1 - real / padded,
        "lanes_padding_share": 1 - real / lanes,
        "padded_attention_per_pair": padded_pairs / pairs,
        "lanes_attention_per_pair": lane_pairs / pairs,
        "distinct_shapes": {
            way: {"first_30": len(set(seen[:30])), "all": len(set(seen))} for way, seen in shapes.items()
        },
        "draws": draws,
    }


def profiled_training(folder: str, name: str, train: Callable[..., dict]) -> dict:
    """Run ``train`` with the PyTorch profiler recording optimizer steps 3 and 4 (after the
    compiling first step and a warm-up step); write the operators that took the most host and
    device time, and the number of kernel launches per step, to ``folder/profile-NAME.txt``."""
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    prof = profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=2, repeat=1))

    class Step(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            prof.step()

    with prof:
        metrics = train(callbacks=[Step()])
    title = f"{name}: {metrics['steps']} steps; 2 profiled"
    write_profile(Path(folder) / f"profile-{name}.txt", title, prof, steps=2)
    return metrics


def counting_step(step: int) -> Any:
    """A trainer callback counting the operators of optimizer step ``step`` (from 0) with
    :class:`OperatorCount`: its forward, backward, gradient clipping and update (the data loader
    collates a step's micro-batches before it begins, and the trainer logs after it ends)."""
    from transformers import TrainerCallback

    class Counting(TrainerCallback):
        def __init__(self) -> None:
            self.ops: OperatorCount | None = None
            self.counts: Counter[str] | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == step:
                self.ops = OperatorCount()
                self.ops.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.ops is not None:
                self.ops.__exit__(None, None, None)
                self.counts, self.ops = self.ops.counts, None

    return Counting()


def main() -> None:
    parser = model_arguments(__doc__)
    parser.add_argument("--engines", default="trl,leap,dpo", help=f"comma-separated: {', '.join(ENGINES)}")
    parser.add_argument("--rows", help="a run's SFT training file instead of generated household rows")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument(
        "--steps", type=int, default=6, help="optimizer steps per engine (the first is warm-up)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="steps left out of tokens/s (the first compiles; compiled layers compile again for new shapes)",
    )
    parser.add_argument("--dpo-steps", type=int, default=None, help="for dpo (default: --steps)")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per optimizer step")
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over the engines (the table shows medians)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--profile", help="write each engine's PyTorch profile (top operators) to this folder"
    )
    parser.add_argument(
        "--count-ops",
        action="store_true",
        help="count the operators of each engine's last step (about one kernel launch each on a GPU); "
        "that step is left out of the timing",
    )
    parser.add_argument(
        "--torch-dropout",
        action="store_true",
        help="every engine with torch's LoRA dropout on a CPU too (as on a GPU), not leap.sparse_dropout",
    )
    parser.add_argument(
        "--padding",
        action="store_true",
        help="only count the padding of --batch-size rows per micro-batch, padded and in lanes, and time "
        "the host's work per micro-batch (collation, the FLOPs estimate); no training",
    )
    args = parser.parse_args()
    if args.count_ops and args.steps < args.warmup + 2:
        parser.error("--count-ops needs --steps of at least --warmup + 2 (the counted step is not timed)")
    logging.basicConfig(level=logging.WARNING)

    model_dir = model_directory(args)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    bf16 = args.device.startswith("cuda") or cpu_has_fast_bf16()
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(args.device, dtype)

    folder = Path(tempfile.mkdtemp(prefix="leap-bench-"))
    sft_file, dpo_file = household_rows(args.episodes, args.horizon, 3, folder)
    if args.rows:
        sft_file = Path(args.rows)
    if args.padding:
        shares = padding_shares(model_dir, sft_file, args.batch_size)
        shares["collation_ms"] = collation_ms(model_dir, sft_file, args.batch_size, args.device)
        shares["flops_estimate_ms"] = flops_estimate_ms(model_dir, args.batch_size)
        print(
            f"{args.batch_size} rows per micro-batch: padding {100 * shares['padded_padding_share']:.1f} % "
            f"of computed positions padded to the longest, {100 * shares['lanes_padding_share']:.1f} % in "
            f"lanes; attention pairs per needed pair {shares['padded_attention_per_pair']:.2f} padded, "
            f"{shares['lanes_attention_per_pair']:.2f} in lanes; collated onto {args.device} in "
            f"{shares['collation_ms']['host']:.1f} ms with the mask built on the host, "
            f"{shares['collation_ms']['device']:.1f} ms built there ({shares['collation_ms']['rows']:.1f} ms "
            f"without a mask, {shares['collation_ms']['rows_lists']:.1f} ms filled from lists); "
            f"distinct shapes in the first 30 and all {shares['draws']} micro-batches: "
            + ", ".join(
                f"{seen['first_30']} and {seen['all']} {way.replace('_', ' ')}"
                for way, seen in shares["distinct_shapes"].items()
            )
            + "; the trainer's FLOPs estimate per micro-batch {transformers:.2f} ms in transformers' "
            "trainer, {leap:.3f} ms in leap's".format(**shares["flops_estimate_ms"])
        )
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "padding": shares}, indent=2))
        return
    params = linear_parameters(config)
    lengths = []
    results: dict[str, dict] = {}
    engines = args.engines.split(",")
    # engines take turns, round after round: a drift of the machine's speed (a shared host's
    # cores) then touches every engine alike
    for _ in range(args.repeats):
        for name in engines:
            # one packed row per micro-batch unless the engine says otherwise (train.micro_batch_size
            # auto would batch them on CUDA)
            rule_args = {"micro_batch_size": 1, **ENGINES[name]}
            # TF32 off unless the engine asks for it: the trainer sets it for the whole process
            rule_args["extra"] = {"tf32": False, **rule_args.get("extra", {})}
            if rule_args.get("micro_batch_size") == "step":
                rule_args["micro_batch_size"] = args.batch_size
            dpo = rule_args.get("rule") == "dpo"
            steps = (args.dpo_steps or args.steps) if dpo else args.steps
            settings = TrainSettings(
                lora_r=16,
                lora_alpha=32,
                learning_rate=1e-3,
                max_steps=steps,
                batch_size=args.batch_size,
                max_length=2048,
                device=args.device,
                **rule_args,
            )
            data = dpo_file if dpo else sft_file
            # compiled layers run their own kernels, which no dispatch mode sees
            counting = counting_step(steps - 1) if args.count_ops and not settings.compile else None
            dropout = (leap.train, "SPARSE_DROPOUT_ON_CPU") if args.torch_dropout else None
            with switched_off(ABLATIONS.get(name)), switched_off(dropout):
                if args.profile:
                    train = partial(train_adapter, model_dir, data, folder / name, settings)
                    metrics = profiled_training(args.profile, name, train)
                else:
                    extra = [counting] if counting else None
                    metrics = train_adapter(model_dir, data, folder / name, settings, seed=0, callbacks=extra)
            if counting and counting.counts is not None:
                metrics["ops_per_step"] = sum(counting.counts.values())
                metrics["top_ops"] = dict(counting.counts.most_common(12))
            # steady state after the warm-up steps (compiled layers compile again as shapes
            # change), without the counted step
            timed = slice(args.warmup, -1 if "ops_per_step" in metrics else None)
            if (args.warmup > 1 or "ops_per_step" in metrics) and metrics.get("step_seconds", [])[timed]:
                seconds, tokens = metrics["step_seconds"][timed], metrics["step_tokens"][timed]
                metrics["seconds_per_step"] = sum(seconds) / len(seconds)
                metrics["tokens_per_s"] = sum(tokens) / sum(seconds)
            if dpo:  # pairs come without the packed rows' collator: tokens from their mean length
                metrics["tokens_per_s"] = (
                    args.batch_size * pair_tokens(model_dir, dpo_file) / metrics["seconds_per_step"]
                )
            runs = results.setdefault(name, metrics).setdefault("runs", [])
            runs.append({key: metrics[key] for key in ("seconds_per_step", "tokens_per_s")})
            # the median over the rounds so far
            for key in ("seconds_per_step", "tokens_per_s"):
                results[name][key] = statistics.median(run[key] for run in runs)
            lengths.append(metrics.get("tokens", 0) / max(steps * args.batch_size, 1))
            if args.json:  # what is done so far survives a time limit
                Path(args.json).write_text(
                    json.dumps({"args": vars(args), "peak_flops": peak, "results": results})
                )
    # model FLOPs per token: a sequence of mean length L attends on average to L/2 keys
    mean_length = max(lengths) or 1.0
    per_token = 4 * (params["layers"] + params["head"]) + 2 * attention_flops(config, mean_length / 2)
    for m in results.values():
        m["mfu"] = m["tokens_per_s"] * per_token / peak

    console = Console(width=150)
    table = Table(
        title=f"{Path(args.model).name}{' (random weights)' if args.random_weights else ''} on {args.device}"
        f" ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}), LoRA r 16, "
        f"{args.batch_size} rows per step; matmul peak {peak / 1e12:.2f} TFLOP/s "
        f"({'bf16' if bf16 else 'fp32'})",
        title_justify="left",
    )
    reference = next(name for name in results if name != "dpo") if set(results) - {"dpo"} else None
    columns = ("engine", "dtype", "attention", "padding", "steps", "s/step", "each round", "tokens/s", "MFU")
    columns = (*columns, "first loss", "ops/step")
    for col in (*columns, f"vs {reference}"):
        table.add_column(col, justify="right")
    base = results[reference]["tokens_per_s"] if reference else None
    for name, m in results.items():
        first = m["loss_curve"][0]["loss"] if m["loss_curve"] else float("nan")
        table.add_row(
            name,
            m.get("dtype", "-"),
            m.get("attention", "-") if name != "dpo" else "sdpa",
            f"{100 * m['padding_share']:.0f} %" if "padding_share" in m else "-",
            str(m["steps"]),
            f"{m['seconds_per_step']:.3f}",
            ", ".join(f"{run['seconds_per_step']:.2f}" for run in m["runs"]),
            f"{m['tokens_per_s']:,.0f}",
            f"{100 * m['mfu']:.2f} %",
            f"{first:.4f}",
            f"{m['ops_per_step']:,}" if "ops_per_step" in m else "-",
            f"{m['tokens_per_s'] / base:.2f}x" if base and name != "dpo" else "-",
        )
    console.print(table)
    for name, m in results.items():
        if "cudagraph_skips" in m:
            console.print(f"{name}: {m['cudagraph_skips']} compiled graphs ran without a CUDA graph")
    console.print(
        f"model FLOPs per token {per_token / 1e6:.0f} M (mean packed sequence {mean_length:.0f} tokens); "
        "dpo tokens/s from the mean pair length"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "peak_flops": peak, "flops_per_token": per_token, "results": results},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

"""Rollout throughput: the student on household episodes, the same model and tasks in every mode.

Modes (one run, one model):

  lockstep          all episodes advance together, one batched generate per step, each step
                    resuming from the previous step's keys and values (the prefix cache): the
                    engine a run uses
  lockstep-nocache  the same without the prefix cache (every step recomputes its transcript)
  lockstep-nocache-cudnn   the same with cuDNN's attention kernels allowed where PyTorch tries
                    them first (H100, H200, B200; leap.models.attention_kernels leaves them out)
  lockstep-static   the same with a preallocated (static) cache: on a GPU transformers compiles
                    the decoding step with CUDA graphs
  lockstep-graphs   the same with leap's decoding loop over a preallocated cache, every decoding
                    step replaying one CUDA graph on a GPU (leap.models.graph_decoding; eager on
                    a CPU)
  lockstep-graphs-eager   lockstep-graphs without recording the graph (what the graph saves)
  sequential        one episode at a time, one model call per step (as the original LEAP code)
  lockstep-concat, lockstep-nocache-concat   lockstep and lockstep-nocache with transformers'
                    growing cache, which concatenates every new token's keys and values (before
                    leap.models.reserved_cache)
  lockstep-padded   lockstep with every row's new prompt tokens padded to the batch's longest, in
                    one pass (before leap.models.grouped_prefill)
  lockstep-padded-strided   lockstep-padded with the language-model head on a strided input too
                    (before transformers_backend.CONTIGUOUS_HEAD)
  lockstep-stopstrings   lockstep with the stop strings' criteria built anew at every generate
                    call, as transformers does (before transformers_backend.REUSE_STOP_CRITERIA)
  lockstep-scan     lockstep with the prefix cache comparing each request with every entry (before
                    its block index, leap.models.prefix_cache.INDEXED)
  served            the student on a vLLM server (student.engine: vllm): every episode in flight
                    at once, each taking its next step as soon as its reply arrives (leap.rollout),
                    the server batching the requests and reusing their prefixes; the server's
                    start-up is timed apart (leap.models.vllm_backend)
  served-lockstep   the same with the episodes in lockstep: each step waits for its slowest reply

The student is the demo's: the transcript prompt, constrained actions, greedy decoding. Prints
env-steps/s, generated tokens/s and model FLOPs utilisation (2 x parameters per token computed,
prompt tokens computed afresh plus generated tokens, against the device's measured matmul peak),
and how many replies every mode shares with the first (greedy decoding: the same replies up to
floating-point reordering). ``--count-ops`` rolls out once more per mode, untimed, counting the
aten operators that compute (on a GPU about one kernel launch each, with its host-side cost) per
agent step (one generate call for all rows in lockstep), and the model's eager forward passes; a
replayed CUDA graph launches its kernels without the dispatcher, so there the count is what the
graph leaves to the host.

    python benchmarks/rollout_throughput.py --episodes 16 --horizon 6 --modes lockstep,sequential
    python benchmarks/rollout_throughput.py --device cuda --random-weights --episodes 100 --horizon 20
    python benchmarks/rollout_throughput.py --episodes 100 --horizon 20 --adapter runs/x/iter_1/adapter \
        --modes lockstep,served --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from _hardware import (
    OperatorCount,
    linear_parameters,
    matmul_peak,
    model_arguments,
    model_directory,
    profiled,
    switched_off,
)
from rich.console import Console
from rich.table import Table

from leap.agents import LLMPolicy, PromptSettings
from leap.envs import make_env
from leap.models import graph_decoding, prefix_cache, transformers_backend
from leap.models.transformers_backend import TransformersChatModel
from leap.rollout import run_episodes

TURNS = PromptSettings(
    style="student", layout="turns", history_steps=20, max_observation_chars=600, list_actions=False
)
#: mode -> (episodes in lockstep, the model's options: its cache (CacheMode) and more)
MODES = {
    "lockstep": (True, {"cache": "prefix"}),
    "lockstep-nocache": (True, {"cache": "dynamic"}),
    "lockstep-nocache-cudnn": (True, {"cache": "dynamic", "cudnn_attention": True}),
    "lockstep-static": (True, {"cache": "static"}),
    "lockstep-graphs": (True, {"cache": "graphs"}),
    "lockstep-graphs-eager": (True, {"cache": "graphs"}),
    "sequential": (False, {"cache": "prefix"}),
    "lockstep-concat": (True, {"cache": "prefix"}),
    "lockstep-nocache-concat": (True, {"cache": "dynamic"}),
    "lockstep-padded": (True, {"cache": "prefix"}),
    "lockstep-padded-strided": (True, {"cache": "prefix"}),
    "lockstep-stopstrings": (True, {"cache": "prefix"}),
    "lockstep-scan": (True, {"cache": "prefix"}),
    "served": (True, {}),
    "served-lockstep": (True, {}),
}
#: modes that switch one of leap's savings off (a module's flag), to measure what it saves
ABLATIONS = {
    "lockstep-concat": (transformers_backend, "RESERVE_CACHE_ROOM"),
    "lockstep-nocache-concat": (transformers_backend, "RESERVE_CACHE_ROOM"),
    "lockstep-padded": (transformers_backend, "GROUP_PREFILL"),
    "lockstep-padded-strided": (transformers_backend, ("GROUP_PREFILL", "CONTIGUOUS_HEAD")),
    "lockstep-stopstrings": (transformers_backend, "REUSE_STOP_CRITERIA"),
    "lockstep-scan": (prefix_cache, "INDEXED"),
    "lockstep-graphs-eager": (graph_decoding, "RECORD"),
}


def student(mode: str, model_dir: str, args: argparse.Namespace) -> tuple[Any, LLMPolicy]:
    """The demo's student as ``mode`` runs it, warmed up."""
    _, options = MODES[mode]
    if mode.startswith("served"):
        model = served_student(model_dir, args)
    else:
        model = TransformersChatModel(
            model_dir, device=args.device, dtype=args.dtype, batch_size=args.episodes, adapter=args.adapter,
            **options,
        )  # fmt: skip
    policy = LLMPolicy(model, prompt=TURNS, max_new_tokens=args.max_new_tokens, constrain_actions=True)
    model.generate([[{"role": "user", "content": "warm up"}]], max_new_tokens=4)
    return model, policy


def served_student(model_dir: str, args: argparse.Namespace) -> Any:
    """The student on a vLLM server started now (its start-up time kept in ``startup_s``)."""
    from leap.models.vllm_backend import BASE_NAME, ServedChatModel, VLLMServer

    start = time.perf_counter()
    dtype = "bfloat16" if args.dtype == "auto" else args.dtype
    server = VLLMServer(model_dir, dtype=dtype, max_lora_rank=args.lora_rank).start()
    name = server.load_adapter("leap-it1", args.adapter) if args.adapter else BASE_NAME
    model = ServedChatModel(server, name, model_dir, max_concurrency=args.episodes, owns_server=True)
    model.startup_s = time.perf_counter() - start
    return model


def roll_out(mode: str, policy: LLMPolicy, tasks: list[str], args: argparse.Namespace) -> list:
    lockstep, _ = MODES[mode]
    return run_episodes(
        lambda: make_env(args.env),
        tasks,
        policy,
        horizon=args.horizon,
        batch_size=args.episodes if lockstep else 1,
        label=mode,
        independent=False if mode.endswith("lockstep") else None,
    )


def counting_calls(model: TransformersChatModel) -> Counter[str]:
    """Count ``model``'s generate calls (one per agent step of all rows in lockstep) and the eager
    forward passes of its network, from now on."""
    calls: Counter[str] = Counter()
    generate = model.generate

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["generate"] += 1
        return generate(*args, **kwargs)

    model.generate = counted  # type: ignore[method-assign]
    model.model.register_forward_pre_hook(lambda *_: calls.update(["forward"]))
    return calls


def free_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main() -> None:
    parser = model_arguments(__doc__)
    parser.add_argument("--env", default="household")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--modes", default="lockstep,lockstep-nocache", help=f"comma-separated: {', '.join(MODES)}"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over the modes (the table shows medians)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--adapter", help="a LoRA adapter directory on --model, loaded in every mode")
    parser.add_argument("--lora-rank", type=int, default=16, help="served: the largest adapter rank")
    parser.add_argument(
        "--count-ops",
        action="store_true",
        help="after the timed rounds, roll out once more per mode counting the operators (about one "
        "kernel launch each on a GPU) per agent step, and the model's eager forward passes",
    )
    parser.add_argument(
        "--profile",
        help="write each mode's profile (PyTorch operators, host and device, and cProfile's Python "
        "functions) to this folder; it slows the run: use few steps",
    )
    args = parser.parse_args()

    model_dir = model_directory(args)
    probe = make_env(args.env)
    tasks = list(probe.task_ids(args.split))[: args.episodes]

    results, replies = {}, {}
    peak = None
    # modes take turns, round after round: a drift of the machine's speed touches every mode alike
    for mode in [m for _ in range(args.repeats) for m in args.modes.split(",")]:
        model, policy = student(mode, model_dir, args)
        if peak is None:
            from transformers import AutoConfig

            dtype = {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float32": torch.float32}
            peak = matmul_peak(args.device, getattr(model, "dtype", dtype.get(args.dtype, torch.bfloat16)))
            params = linear_parameters(AutoConfig.from_pretrained(model_dir))
        before = (model.usage.prompt_tokens, model.usage.completion_tokens)
        start = time.perf_counter()
        with switched_off(ABLATIONS.get(mode)), profiled(args.profile, f"rollout-{mode}"):
            episodes = roll_out(mode, policy, tasks, args)
        seconds = time.perf_counter() - start
        prompt = model.usage.prompt_tokens - before[0]
        generated = model.usage.completion_tokens - before[1]
        # the served engine's prefix cache is its own: what it computes is not known here
        prefix = getattr(model, "prefix_cache", None)
        computed = prompt - (prefix.reused_tokens if prefix else 0) + generated
        steps = sum(e.n_actions for e in episodes)
        flops_per_token = 2 * (params["layers"] + params["head"])
        runs = [*results.get(mode, {}).get("runs", []), round(seconds, 2)]
        seconds = statistics.median(runs)
        results[mode] = {
            "episodes": len(episodes),
            "env_steps": steps,
            "seconds": round(seconds, 2),
            "runs": runs,
            "steps_per_second": steps / seconds,
            "generated_tokens": generated,
            "generated_per_second": generated / seconds,
            "computed_tokens": computed,
            "mfu": None if mode.startswith("served") else computed * flops_per_token / seconds / peak,
        }
        if hasattr(model, "startup_s"):
            results[mode]["server_startup_s"] = round(model.startup_s, 1)
        if getattr(model, "cache", None) == "graphs":  # generate calls, and how many replayed a CUDA graph
            results[mode]["graph_batches"] = list(model.graph_batches)
        replies.setdefault(mode, [s.raw for e in episodes for s in e.steps])
        if args.json:  # what is done so far survives a time limit
            Path(args.json).write_text(
                json.dumps({"args": vars(args), "peak_flops": peak, "results": results})
            )
        model.close()
        del model, policy
        free_memory(args.device)

    # one more round, untimed, with every operator counted (a fresh model: the same prefix cache
    # hits as in a timed round)
    for mode in [m for m in args.modes.split(",") if not m.startswith("served")] if args.count_ops else ():
        model, policy = student(mode, model_dir, args)
        calls = counting_calls(model)
        with switched_off(ABLATIONS.get(mode)), OperatorCount() as ops:
            roll_out(mode, policy, tasks, args)
        agent_steps = max(calls["generate"], 1)
        results[mode].update(
            ops_per_agent_step=ops.total / agent_steps,
            # eager forward passes of the model (a replayed CUDA graph is none: it launches its
            # kernels without the dispatcher, so its operators are not counted either)
            forwards_per_agent_step=calls["forward"] / agent_steps,
            top_ops=dict(ops.counts.most_common(12)),
        )
        del model, policy
        free_memory(args.device)

    first = next(iter(replies))
    table = Table(
        title=f"{Path(args.model).name}{' (random weights)' if args.random_weights else ''} on {args.env}/"
        f"{args.split}, {args.device}, {args.episodes} episodes x horizon {args.horizon}; "
        f"matmul peak {peak / 1e12:.2f} TFLOP/s",
        title_justify="left",
    )
    columns = ("mode", "env steps", "seconds", "each round", "env steps/s", "generated tok/s", "MFU")
    if args.count_ops:
        columns = (*columns, "ops/agent step", "forwards/agent step")
    for col in (*columns, f"same as {first}"):
        table.add_column(col, justify="right")
    for mode, r in results.items():
        same = sum(a == b for a, b in zip(replies[first], replies[mode], strict=False))
        r["same_replies"] = same
        table.add_row(
            mode,
            str(r["env_steps"]),
            f"{r['seconds']:.1f}",
            ", ".join(f"{x:.1f}" for x in r["runs"]),
            f"{r['steps_per_second']:.2f}",
            f"{r['generated_per_second']:,.0f}",
            "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.2f} %",
            *(
                (f"{r['ops_per_agent_step']:,.0f}", f"{r['forwards_per_agent_step']:.1f}")
                if args.count_ops
                else ()
            ),
            f"{same}/{len(replies[first])}",
        )
    Console(width=150).print(table)
    for mode, r in results.items():
        if "server_startup_s" in r:
            print(f"{mode}: the server started in {r['server_startup_s']:.0f} s (not in the table's times)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "peak_flops": peak, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()

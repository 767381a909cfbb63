"""Rollout throughput: the same model on the same episodes, sequential vs lockstep batched.

Sequential runs one episode at a time with one model call per step (as the original LEAP code
does); lockstep advances all episodes together with one batched call per step. Prints env-steps
per second for both and their ratio (the target is >= 3x with SmolLM2 on 2 CPU cores).

    python benchmarks/rollout_throughput.py --model smollm2-135m --episodes 16 --horizon 6
"""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.table import Table

from leap.agents import LLMPolicy
from leap.envs import make_env
from leap.models import load_chat_model
from leap.rollout import run_episodes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--env", default="household")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    model = load_chat_model(args.model, dtype=args.dtype, batch_size=args.episodes)
    policy = LLMPolicy(model, max_new_tokens=args.max_new_tokens)
    probe = make_env(args.env)
    tasks = list(probe.task_ids(args.split))[: args.episodes]
    model.generate([[{"role": "user", "content": "warm up"}]], max_new_tokens=4)

    results = {}
    replies = {}
    for mode, batch_size in (("sequential", 1), ("lockstep", args.episodes)):
        start = time.perf_counter()
        episodes = run_episodes(
            lambda: make_env(args.env), tasks, policy, horizon=args.horizon, batch_size=batch_size, label=mode
        )
        seconds = time.perf_counter() - start
        steps = sum(e.n_actions for e in episodes)
        results[mode] = {
            "episodes": len(episodes),
            "env_steps": steps,
            "seconds": round(seconds, 2),
            "steps_per_second": steps / seconds,
        }
        replies[mode] = [s.raw for e in episodes for s in e.steps]
    ratio = results["lockstep"]["steps_per_second"] / results["sequential"]["steps_per_second"]
    same = sum(a == b for a, b in zip(replies["sequential"], replies["lockstep"], strict=False))

    table = Table(
        title=f"{args.model} on {args.env}/{args.split}, dtype {model.dtype}, "
        f"{args.episodes} episodes x horizon {args.horizon}",
        title_justify="left",
    )
    for col in ("mode", "episodes", "env steps", "seconds", "env steps/s"):
        table.add_column(col, justify="right")
    for mode, r in results.items():
        table.add_row(
            mode,
            str(r["episodes"]),
            str(r["env_steps"]),
            f"{r['seconds']:.1f}",
            f"{r['steps_per_second']:.2f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"lockstep / sequential: [bold]{ratio:.2f}x[/bold]   "
        f"identical replies: {same}/{len(replies['sequential'])}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "results": results, "ratio": ratio, "identical_replies": same},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()

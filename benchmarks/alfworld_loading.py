"""ALFWorld evaluation throughput: games loaded one at a time vs worker processes with prefetch.

Loading an ALFWorld game costs about 0.6 s of Python. "sequential" plays one episode at a time
in one worker process and loads each game when its episode starts; "parallel" keeps a batch of
episodes in flight over one worker per core, steps them from threads and prefetches each
environment's next game. Both run the same policy on the same games; prints episodes per second
and the ratio. The handcoded expert needs no model and no planner, so loading dominates.

    python benchmarks/alfworld_loading.py --games 24
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def run_mode(mode: str, games: int, split: str, batch_size: int) -> None:
    """Run inside a fresh interpreter (the worker pool is per process)."""
    from leap.envs import make_env
    from leap.envs.alfworld.experts import HandcodedExpertPolicy
    from leap.rollout import run_episodes

    prefetch = mode == "parallel"
    tasks = list(make_env("alfworld").task_ids(split))[:games]
    start = time.perf_counter()
    episodes = run_episodes(
        lambda: make_env("alfworld", prefetch=prefetch),
        tasks,
        HandcodedExpertPolicy(),
        batch_size=batch_size if mode == "parallel" else 1,
        show_progress=False,
    )
    seconds = time.perf_counter() - start
    steps = sum(e.n_actions for e in episodes)
    print(json.dumps({"mode": mode, "seconds": seconds, "episodes": len(episodes), "steps": steps}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--games", type=int, default=24)
    parser.add_argument("--split", default="valid_seen")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.mode:
        run_mode(args.mode, args.games, args.split, args.batch_size)
        return

    results = {}
    for mode, workers in (("sequential", 1), ("parallel", args.workers)):
        env = {**os.environ, "LEAP_ALFWORLD_WORKERS": str(workers)}
        cmd = [
            sys.executable,
            __file__,
            "--mode",
            mode,
            "--games",
            str(args.games),
            "--split",
            args.split,
            "--batch-size",
            str(args.batch_size),
        ]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    table = Table(title=f"alfworld {args.split}: {args.games} games, handcoded expert")
    for column in ("mode", "workers", "seconds", "episodes/s", "steps/s"):
        table.add_column(column, justify="right")
    for mode, r in results.items():
        table.add_row(
            mode,
            str(1 if mode == "sequential" else args.workers),
            f"{r['seconds']:.1f}",
            f"{r['episodes'] / r['seconds']:.2f}",
            f"{r['steps'] / r['seconds']:.1f}",
        )
    ratio = results["sequential"]["seconds"] / results["parallel"]["seconds"]
    console = Console()
    console.print(table)
    console.print(f"parallel / sequential throughput: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**results, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()

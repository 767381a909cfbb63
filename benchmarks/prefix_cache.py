"""Rollouts with a full-history prompt: every prompt computed from scratch vs prefix caching.

Both ways roll out the same model (greedy, constrained actions) on the same household episodes
with the whole episode in the prompt, in lockstep batches. With prefix caching, each step reuses
the keys and values of the previous step's prompt and reply and computes only the new tokens.
Prints seconds and prompt tokens computed for both, the speed-up, and how many replies agree.

    python benchmarks/prefix_cache.py --model smollm2-135m --episodes 16 --horizon 12
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from leap.agents import LLMPolicy, PromptSettings
from leap.envs import make_env
from leap.models import load_chat_model
from leap.rollout import run_episodes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--layout", default="single", help="prompt layout: single or turns")
    args = parser.parse_args()

    prompt = PromptSettings(
        style="student", history_steps=args.horizon, list_actions=False, layout=args.layout
    )
    tasks = list(make_env("household").task_ids(args.split))[: args.episodes]
    results, replies = {}, {}
    for mode, megabytes in (("from scratch", 0), ("prefix cache", 1024)):
        model = load_chat_model(args.model, batch_size=args.episodes, prefix_cache_mb=megabytes)
        model.generate([[{"role": "user", "content": "warm up"}]], max_new_tokens=4)
        policy = LLMPolicy(model, prompt=prompt, max_new_tokens=args.max_new_tokens, constrain_actions=True)
        start = time.perf_counter()
        episodes = run_episodes(
            lambda: make_env("household"),
            tasks,
            policy,
            horizon=args.horizon,
            batch_size=args.episodes,
            label=mode,
        )
        cache = getattr(model, "prefix_cache", None)
        results[mode] = {
            "seconds": time.perf_counter() - start,
            "steps": sum(e.n_actions for e in episodes),
            "prompt_tokens": model.usage.prompt_tokens - (cache.reused_tokens if cache else 0),
        }
        replies[mode] = [s.raw for e in episodes for s in e.steps]
    base, cached = results["from scratch"], results["prefix cache"]
    same = sum(a == b for a, b in zip(replies["from scratch"], replies["prefix cache"], strict=False))

    table = Table(
        title=f"{args.model}, household/{args.split}, {args.episodes} episodes x horizon {args.horizon}, "
        f"{args.layout} prompt with the whole history",
        title_justify="left",
    )
    for col in ("mode", "env steps", "prompt tokens computed", "seconds"):
        table.add_column(col, justify="right")
    for mode, r in results.items():
        table.add_row(mode, str(r["steps"]), str(r["prompt_tokens"]), f"{r['seconds']:.1f}")
    console = Console()
    console.print(table)
    console.print(
        f"speed-up {base['seconds'] / cached['seconds']:.2f}x; "
        f"replies identical {same}/{len(replies['from scratch'])}"
    )


if __name__ == "__main__":
    main()

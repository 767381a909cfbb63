"""Prompt building's host-side cost per agent step of a lockstep rollout: the agent's transcript
prompt (``leap.agents.render_prompt``), the chat template, the tokenizer and the batch's input
tensors (``transformers_backend.left_padded_batch``, the layout without prefix reuse), for the
same views of household episodes (random actions, every episode as long as the horizon) through
leap's way and through versions with its savings switched off, taking turns:

  leap        past turns' texts remembered (``leap.agents.render_remembered``), only the messages
              after the longest remembered cut of a prompt tokenised
              (``leap.models.prompt_tokens``), the batch assembled in arrays
  retokenize  every prompt tokenised whole (``prompt_tokens.REMEMBER_PROMPTS`` off)
  rerender    every past turn rendered again at each step (``agents.REMEMBER_RENDERS`` off)
  listbatch   the batch given to ``torch.tensor`` as nested lists
              (``transformers_backend.ARRAY_BATCHES`` off)
  before      all three

Each way starts with empty memos and goes through every step of the rollout, as a run does. Prints
milliseconds per agent step (and per part), the ratio to "before", and checks that every way gives
the same tokens and tensors.

    python benchmarks/prompt_encoding.py --episodes 100 --horizon 20
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from unittest.mock import patch

import torch
from _hardware import model_arguments

from leap import agents
from leap.agents import PromptSettings, render_prompt
from leap.envs import make_env
from leap.models import prompt_tokens, transformers_backend
from leap.models.prompt_tokens import PromptTokenizer
from leap.models.registry import resolve_model_path
from leap.models.transformers_backend import left_padded_batch, load_tokenizer
from leap.policy import AgentView, Decision, Policy
from leap.rollout import run_episodes

TURNS = PromptSettings(
    style="student", layout="turns", history_steps=20, max_observation_chars=600, list_actions=False
)
WAYS = {  # way -> (remember turns, remember tokens, batches in arrays)
    "leap": (True, True, True),
    "retokenize": (True, False, True),
    "rerender": (False, True, True),
    "listbatch": (True, True, False),
    "before": (False, False, False),
}
PARTS = ("agent", "chat", "tokens", "batch")


class Recorder(Policy):
    """Random candidate actions with reasons of varied length; keeps every step's views."""

    def __init__(self, seed: int = 0) -> None:
        self.steps: list[list[AgentView]] = []
        self.rng = random.Random(seed)

    def act(self, views: list[AgentView]) -> list[Decision]:
        self.steps.append(list(views))
        words = ["the", "mug", "may", "be", "in", "a", "cabinet", "I", "should", "look", "there", "next"]
        return [
            Decision(
                action=self.rng.choice(v.action_space.choices),
                reason=" ".join(self.rng.choice(words) for _ in range(self.rng.randrange(6, 24))),
            )
            for v in views
        ]


def main() -> None:
    parser = model_arguments(__doc__)
    parser.add_argument("--env", default="household")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="rollouts timed per way")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_model_path(args.model))
    recorder = Recorder()
    tasks = list(make_env(args.env).task_ids(args.split))[: args.episodes]
    run_episodes(
        lambda: make_env(args.env),
        tasks,
        recorder,
        horizon=args.horizon,
        batch_size=len(tasks),
        show_progress=False,
    )

    def rollout(way: str) -> tuple[dict[str, float], list]:
        """Every step's prompts through ``way``: seconds per part, and the batches."""
        turns, tokens, arrays = WAYS[way]
        agents._RENDERED.clear()
        encode = PromptTokenizer(tokenizer)
        seconds = dict.fromkeys(PARTS, 0.0)
        batches = []
        with (
            patch.object(agents, "REMEMBER_RENDERS", turns),
            patch.object(prompt_tokens, "REMEMBER_PROMPTS", tokens),
            patch.object(transformers_backend, "ARRAY_BATCHES", arrays),
        ):
            for views in recorder.steps:
                start = time.perf_counter()
                conversations = [render_prompt(v, TURNS) for v in views]
                rendered = time.perf_counter()
                texts = [
                    tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                    for c in conversations
                ]
                templated = time.perf_counter()
                encoded = encode(texts)
                tokenized = time.perf_counter()
                batches.append(left_padded_batch(encoded, [0] * len(encoded), tokenizer.pad_token_id))
                done = time.perf_counter()
                seconds["agent"] += rendered - start
                seconds["chat"] += templated - rendered
                seconds["tokens"] += tokenized - templated
                seconds["batch"] += done - tokenized
        return seconds, batches

    times: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    batches: dict[str, list] = {}
    for _ in range(args.rounds):
        for way in WAYS:
            seconds, batches[way] = rollout(way)
            times[way].append(seconds)
    steps = len(recorder.steps)
    ms = {
        way: {part: 1000 * statistics.median(r[part] for r in rounds) / steps for part in rounds[0]}
        for way, rounds in times.items()
    }
    totals = {
        way: statistics.median(1000 * sum(r.values()) / steps for r in rounds)
        for way, rounds in times.items()
    }
    report = {
        "agent_steps": steps,
        "prompts": sum(map(len, recorder.steps)),
        "prompt_tokens_per_step": sum(int(mask.sum()) for _, mask in batches["before"]) / steps,
        "ms_per_agent_step": totals,
        "ms_per_part": ms,
        "speedup_over_before": {way: totals["before"] / t for way, t in totals.items()},
        "same_tokens": all(
            torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)
            for way in WAYS
            for (ids, mask), (ref_ids, ref_mask) in zip(batches[way], batches["before"], strict=True)
        ),
    }
    print(
        f"{args.episodes} episodes x {steps} steps, {report['prompt_tokens_per_step']:.0f} prompt tokens "
        f"per step; ms per agent step (agent templates + chat template + tokenizer + batch tensors):"
    )
    for way in WAYS:
        parts = " + ".join(f"{ms[way][p]:.1f}" for p in PARTS)
        print(f"  {way:11} {totals[way]:7.1f}  ({parts})  {report['speedup_over_before'][way]:.2f}x before")
    print(f"same tokens: {report['same_tokens']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

"""Constrained decoding's host-side cost for one agent step of a lockstep rollout: building each
row's token trie of candidate actions, searching each reply for the marker (``ACTION:``) and
masking the batch's scores at every decoding step. The same replies and scores go through leap's
``ChoiceLogitsProcessor`` and through versions of it with its savings switched off, taking turns:

  leap        tries from the choices' tokens, remembered across agent steps (a batch's new
              choices tokenised in one call); a reply searched for the marker only when its
              newest token holds the marker's last character; after the marker, the allowed
              tokens of all rows sent to the device in one copy and the batch masked in four
              operations
  unremembered   each row's choices tokenised again at every agent step, one call per row
  row-by-row  the mask built row by row: per row a copy (a synchronisation on a GPU) and four
              operations at every step
  whole-search   every reply decoded and searched whole at every step until its marker
  per-choice  one tokenizer call per candidate action
  before      all three: the processor before these savings

Each row's reply is "REASON: ... ACTION: <one of its candidates>", fed one token per decoding
step as generate does, with household-like candidates (about 20 per row). Prints milliseconds per
agent step and the ratio to "before", and checks that every way gives the same scores.

    python benchmarks/choice_decoding.py --rows 100
    python benchmarks/choice_decoding.py --device cuda --rows 100
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from unittest.mock import patch

import torch
from _hardware import model_arguments, synchronize

from leap.models import choice_decoding
from leap.models.base import ChoiceConstraint
from leap.models.choice_decoding import _END, ChoiceLogitsProcessor, Trie
from leap.models.registry import resolve_model_path
from leap.models.transformers_backend import load_tokenizer


class RowByRow(ChoiceLogitsProcessor):
    """Masks one row at a time, as before."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, tokens in enumerate(input_ids[:, self.prompt_length :].tolist()):
            if tokens and tokens[-1] == self.eos_token_id:
                continue
            allowed = self._allowed(row, tokens)
            if allowed is None:
                continue
            keep = torch.tensor(allowed, device=scores.device)
            masked = torch.full_like(scores[row], float("-inf"))
            masked[keep] = scores[row, keep]
            scores[row] = masked
        return scores


def per_choice_trie(tokenizer, choices) -> Trie:
    """The trie from one tokenizer call per choice, as before."""
    root: Trie = {}
    for choice in choices:
        node = root
        for token in tokenizer(" " + choice, add_special_tokens=False)["input_ids"]:
            node = node.setdefault(token, {})
        node[_END] = {}
    return root


def processor(way: str, tokenizer, constraints, eos: int) -> ChoiceLogitsProcessor:
    """The processor of one way (see the module's doc)."""
    kind = RowByRow if way in ("row-by-row", "before") else ChoiceLogitsProcessor
    tries = per_choice_trie if way in ("per-choice", "before") else choice_decoding.build_trie
    remember = way not in ("unremembered", "per-choice", "before")
    # what the processor builds its tries with
    with (
        patch.object(choice_decoding, "build_trie", tries),
        patch.object(choice_decoding, "REMEMBER_CHOICES", remember),
    ):
        made = kind(tokenizer, 3, constraints, eos)
    if way in ("whole-search", "before"):
        made._may_end_marker = lambda row, tokens, marker: True
    return made


def main() -> None:
    parser = model_arguments(__doc__)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="agent steps timed per way")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_model_path(args.model))
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    rng = random.Random(0)
    things = ["cabinet", "drawer", "countertop", "shelf", "fridge", "sinkbasin", "mug", "apple"]
    verbs = ["go to", "open", "close", "take", "examine"]
    constraints, replies = [], []
    for _ in range(args.rows):
        choices = tuple(
            sorted({f"{rng.choice(verbs)} {rng.choice(things)} {rng.randrange(1, 12)}" for _ in range(20)})
        )
        constraints.append(ChoiceConstraint("ACTION:", choices))
        reason = " ".join(rng.choice(things) for _ in range(rng.randrange(8, 20)))
        text = f"REASON: the {reason} may be there.\nACTION: {rng.choice(choices)}"
        replies.append(tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])
    steps = max(map(len, replies))
    # a finished row is padded with the end token, as generate pads it
    tokens = torch.tensor([[1, 2, 3, *r, *[eos] * (steps - len(r))] for r in replies], device=args.device)
    scores = torch.randn(args.rows, vocab, device=args.device)
    ways = ["leap", "unremembered", "row-by-row", "whole-search", "per-choice", "before"]

    def agent_step(way: str | None, count: bool = False) -> torch.Tensor:
        """One agent step's decoding steps through ``way``'s processor (None: none, the harness
        alone: fresh scores at every step); with ``count``, each row's unmasked scores summed
        over the steps."""
        made = processor(way, tokenizer, constraints, eos) if way else None
        finite = torch.zeros(args.rows, device=args.device)
        work = torch.empty_like(scores)
        for k in range(steps):
            work.copy_(scores)  # into the same memory: no allocation to time
            out = made(tokens[:, : 3 + k], work) if made else work
            if count:
                finite += torch.isfinite(out).sum(dim=1)
        return finite

    masks = {way: agent_step(way, count=True) for way in ways}
    times: dict[str | None, list[float]] = {way: [] for way in [*ways, None]}
    for _ in range(args.rounds):
        for way in times:
            synchronize(args.device)
            start = time.perf_counter()
            agent_step(way)
            synchronize(args.device)
            times[way].append(1000 * (time.perf_counter() - start))
    harness = statistics.median(times.pop(None))
    # the harness's own time (fresh scores at every step) taken out
    medians = {way: statistics.median(t) - harness for way, t in times.items()}
    report = {
        "rows": args.rows,
        "decoding_steps": steps,
        "harness_ms": harness,
        "ms_per_agent_step": medians,
        "speedup_over_before": {way: medians["before"] / ms for way, ms in medians.items()},
        "same_masks": all(torch.equal(masks[way], masks["before"]) for way in ways),
    }
    print(
        f"{args.rows} rows, {steps} decoding steps, {vocab} tokens, {args.device}; ms per agent step "
        f"(the harness's {harness:.1f} ms taken out):"
    )
    for way in ways:
        print(f"  {way:13} {medians[way]:9.1f}  ({report['speedup_over_before'][way]:.2f}x before)")
    print(f"same masks: {report['same_masks']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

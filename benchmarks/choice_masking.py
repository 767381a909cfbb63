"""Constrained decoding's mask: leap's ChoiceLogitsProcessor, which masks the whole batch in four
operations after one copy of the allowed tokens to the device, against the same processor masking
row by row (as before: a copy, a synchronisation on a GPU, and four operations per row at every
decoding step). Both take turns on the same inputs: --rows rows right after "ACTION:"
(household-like choices), the model's vocabulary; prints milliseconds per call, the ratio, and
checks that both give the same scores.

    python benchmarks/choice_masking.py --rows 100
    python benchmarks/choice_masking.py --device cuda --rows 100
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from _hardware import model_arguments, synchronize

from leap.models.base import ChoiceConstraint
from leap.models.choice_decoding import ChoiceLogitsProcessor
from leap.models.registry import resolve_model_path
from leap.models.transformers_backend import load_tokenizer


class RowByRow(ChoiceLogitsProcessor):
    """The processor as it masked before: one row at a time."""

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


def main() -> None:
    parser = model_arguments(__doc__)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_model_path(args.model))
    choices = [f"go to cabinet {i}" for i in range(1, 30)] + [f"open drawer {i}" for i in range(1, 20)]
    constraint = ChoiceConstraint("ACTION:", tuple(choices))
    reply = tokenizer("REASON: the mug may be there.\nACTION:", add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([[1, 2, 3, *reply]] * args.rows, device=args.device)
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    ways = {"batched": ChoiceLogitsProcessor, "row by row": RowByRow}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.calls):
        for name, way in ways.items():
            processor = way(tokenizer, 3, [constraint] * args.rows, eos)
            processor(input_ids, torch.randn(args.rows, vocab, device=args.device))  # finds the marker
            scores = torch.randn(args.rows, vocab, device=args.device)
            synchronize(args.device)
            start = time.perf_counter()
            processor(input_ids, scores)
            synchronize(args.device)
            times[name].append(1000 * (time.perf_counter() - start))
    scores = torch.randn(args.rows, vocab, device=args.device)
    outputs = [
        way(tokenizer, 3, [constraint] * args.rows, eos)(input_ids, scores.clone()) for way in ways.values()
    ]
    results = {name: statistics.median(t) for name, t in times.items()}
    report = {
        "ms_per_call": results,
        "speedup": results["row by row"] / results["batched"],
        "same_scores": bool(torch.equal(*outputs)),
        "allowed_per_row": int(torch.isfinite(outputs[0][0]).sum()),
    }
    print(
        f"{args.rows} rows, {vocab} tokens, {args.device}: batched {results['batched']:.2f} ms, row by row "
        f"{results['row by row']:.2f} ms per call ({report['speedup']:.2f}x); "
        f"same scores: {report['same_scores']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

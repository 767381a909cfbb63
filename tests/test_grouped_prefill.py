"""Prefill in groups of rows: the plan's cuts, and the same keys and values as one padded pass
(the same replies: tests/test_models.py)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from leap.models.grouped_prefill import plan_groups, prefill_in_groups
from leap.models.reserved_cache import reserved_cache
from leap.models.transformers_backend import CACHE_ARGUMENT


def test_the_plan_groups_similar_rows_when_calls_are_cheap_and_keeps_one_when_dear() -> None:
    new, starts = [3, 3, 4, 40, 41, 90], [0] * 6
    free = plan_groups(new, starts, 100, call_tokens=0.0)
    assert all(len({new[r] for r in group}) == 1 for group in free)  # no padding at all
    assert [r for g in free for r in g] == list(range(6))  # contiguous, in order, every row once
    assert plan_groups(new, starts, 100, call_tokens=10.0) == [range(0, 3), range(3, 5), range(5, 6)]
    assert plan_groups(new, starts, 100, call_tokens=1e6) == [range(0, 6)]
    # the default cost splits off a long row from many short ones
    assert len(plan_groups([20] * 31 + [170], [0] * 32, 171)) == 2
    assert plan_groups([], [], 0) == []


def test_grouped_prefill_writes_the_keys_and_values_of_one_padded_pass(tiny_model_path) -> None:
    """Rows laid out as generation lays them out, [pad][reused][pad][new]: the reused columns come
    first (as from the prefix cache), then the groups compute all new tokens but the last; every
    real column's keys and values equal those of one forward pass over the padded batch."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    decoder = model.base_model
    reused, new = [0, 6, 2, 9, 5], [4, 1, 7, 3, 12]
    width_reused, width_new = max(reused), max(new)
    width = width_reused + width_new
    masks = [
        [0] * (width_reused - r) + [1] * r + [0] * (width_new - n) + [1] * n
        for r, n in zip(reused, new, strict=True)
    ]
    mask = torch.tensor(masks)
    ids = torch.randint(5, 200, (len(new), width), generator=torch.Generator().manual_seed(0))
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    with torch.inference_mode():
        expected = DynamicCache(config=model.config)
        decoder(
            input_ids=ids[:, : width - 1],
            attention_mask=mask[:, : width - 1],
            position_ids=positions[:, : width - 1],
            **{CACHE_ARGUMENT: expected},
            use_cache=True,
        )
        got = reserved_cache(model.config, width + 8)
        decoder(
            input_ids=ids[:, :width_reused],
            attention_mask=mask[:, :width_reused],
            position_ids=positions[:, :width_reused],
            **{CACHE_ARGUMENT: got},
            use_cache=True,
        )
        groups = [range(0, 2), range(2, 4), range(4, 5)]
        prefill_in_groups(decoder, got, ids, mask, new, groups, CACHE_ARGUMENT)
    assert got.get_seq_length() == width - 1
    real = mask[:, : width - 1].bool()
    for a, b in zip(expected.layers, got.layers, strict=True):
        for row in range(len(new)):
            torch.testing.assert_close(b.keys[row][:, real[row]], a.keys[row][:, real[row]])
            torch.testing.assert_close(b.values[row][:, real[row]], a.values[row][:, real[row]])

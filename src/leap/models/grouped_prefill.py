"""Compute a batch's new prompt tokens in groups of rows of similar length, not padded to the
longest row of the whole batch.

A lockstep rollout step feeds every episode its reply and new observation at once. The rows' new
parts differ in length (an observation that lists a receptacle's contents against "Nothing
happens."), and a batched forward pass pads every row to the longest: at the demo's shape (32
episodes, SmolLM2-135M) about a quarter of the computed prompt tokens were padding, and every
padded query also attends to the whole history. Rows sorted by their new length (``_batches``
does) and cut into a few contiguous groups carry little padding each; a group's rows also skip
the history columns that none of them uses (the batch's left padding).

:func:`prefill_in_groups` writes every group's keys and values into the batch's reserved cache
(``leap.models.reserved_cache``), all but each row's last prompt token; ``generate`` then computes
that last column for the whole batch (the first logits) and decodes as before. The keys and values
are those of one batched pass up to floating-point rounding (other matrix shapes): in fp32 the
greedy replies are identical (``tests/test_models.py``), in bf16 a few differ.

More groups mean more forward calls, each with a fixed cost (about 25 ms on 2 CPU cores, the time
of some 40 tokens) and less efficient matrix multiplies, so :func:`plan_groups` weighs the padding
it saves against that cost. On a GPU, where small models are bound by kernel launches, the whole
batch stays one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

from leap.models.reserved_cache import ReservedLayer, key_value_shape

#: the fixed cost of one more forward call, in tokens computed (2 CPU cores, SmolLM2-135M, forward
#: passes of 1 to 32 rows of 8 to 100 tokens: about 25 ms a call plus 1,450 tokens/s)
CALL_TOKENS = 40.0
#: keys at which a query's attention costs what its linear layers cost, roughly: a padded prefill
#: of 5,440 tokens (32 rows) took 5.9 s over 464 keys and 9.6 s over 1,724, about 3 ms more per
#: key, against some 3-4 s for its linear layers
ATTENTION_KEYS = 1000.0


def plan_groups(
    new: Sequence[int],
    starts: Sequence[int],
    width: int,
    *,
    call_tokens: float = CALL_TOKENS,
    attention_keys: float = ATTENTION_KEYS,
) -> list[range]:
    """Cut the rows, in their order, into contiguous groups that minimise the estimated cost.

    Args:
        new: each row's new prompt tokens (all but the last are computed in its group).
        starts: each row's first real column (the columns before it are padding).
        width: the batch's columns; a row's new tokens end at the last one.
        call_tokens: the fixed cost of a group's forward call, in tokens.
        attention_keys: the keys at which a token's attention costs what its linear layers cost.

    A group costs ``call_tokens`` plus, for each of its rows, the group's longest new part (less
    the last token) weighted by the keys the group attends to. Dynamic programming over the cut
    points: optimal for contiguous groups, which is the best a sorted batch can do.
    """
    n = len(new)
    if n == 0:
        return []
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for stop in range(1, n + 1):
        longest, first = 0, width
        for begin in range(stop - 1, -1, -1):
            longest, first = max(longest, new[begin] - 1), min(first, starts[begin])
            keys = width - 1 - first
            cost = best[begin] + call_tokens + (stop - begin) * longest * (1 + keys / attention_keys)
            if cost < best[stop]:
                best[stop], cut[stop] = cost, begin
    groups: list[range] = []
    stop = n
    while stop:
        groups.append(range(cut[stop], stop))
        stop = cut[stop]
    return groups[::-1]


def prefill_in_groups(
    decoder: Any,
    cache: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    new: Sequence[int],
    groups: Sequence[range],
    cache_argument: str,
) -> None:
    """Compute every row's new tokens but the last, group by group, into ``cache``.

    Args:
        decoder: the model without its language-model head (``model.base_model``).
        cache: the batch's cache, every layer a :class:`ReservedLayer` holding the reused columns.
        input_ids, attention_mask: the batch's rows, ``[rows, width]``, each row's new tokens at the
            end (``TransformersChatModel._generate_batch``'s layout).
        new: each row's new prompt tokens.
        groups: contiguous rows (:func:`plan_groups`).
        cache_argument: the name the model's forward takes a cache by.

    Afterwards the cache holds ``width - 1`` columns; positions follow the attention mask, as in
    ``generate``.
    """
    rows, width = input_ids.shape
    kv_heads, head_dim = key_value_shape(decoder.config)
    like = torch.empty((rows, kv_heads, 0, head_dim), dtype=decoder.dtype, device=input_ids.device)
    layers: list[ReservedLayer] = cache.layers
    for layer in layers:
        layer.hold(width - 1, like)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    real = attention_mask.bool()
    for group in groups:
        computed = max(new[r] for r in group) - 1
        if computed <= 0:
            continue
        rows_ = slice(group.start, group.stop)
        begin = width - 1 - computed
        # the group's first real column: the columns before it are padding in all its rows
        used = real[rows_, :begin].any(0).nonzero()
        start = int(used[0, 0]) if len(used) else begin
        view = DynamicCache(config=decoder.config)
        view.layers = [layer.window(rows_, start, begin) for layer in layers]
        decoder(
            input_ids=input_ids[rows_, begin : width - 1],
            attention_mask=attention_mask[rows_, start : width - 1],
            position_ids=positions[rows_, begin : width - 1],
            use_cache=True,
            **{cache_argument: view},
        )

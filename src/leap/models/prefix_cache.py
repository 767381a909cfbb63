"""Automatic prefix caching for local generation: keep the keys and values of recent sequences and
start the next request from the longest prefix they share with it.

An agent's prompt at step t+1 is its prompt at step t, its reply and the new observation, so with
a full-history prompt almost every token of a step was already computed at the step before. The
cache stores, per finished sequence, its token ids and each layer's keys and values (RoPE already
applied, so they are valid wherever they sit in a later batch); a new batch is assembled with the
reused part left-padded and the new tokens after it, and the attention mask hides the padding.
Entries are evicted least-recently-used past a token budget.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: one (keys, values) pair per layer, each [kv_heads, tokens, head_dim]
LayerStates = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class CachedSequence:
    tokens: np.ndarray
    states: LayerStates


def common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differs = np.flatnonzero(a[:n] != b[:n])
    return int(differs[0]) if len(differs) else n


class PrefixCache:
    """Keys and values of recent sequences, looked up by longest common token prefix.

    Args:
        max_tokens: the most tokens held over all entries; older entries are evicted first.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int, CachedSequence] = OrderedDict()
        self._next_key = 0
        self.tokens_held = 0
        #: prompt tokens served from the cache and computed afresh, over the cache's life
        self.reused_tokens = 0
        self.computed_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: Sequence[int]) -> tuple[CachedSequence | None, int]:
        """The entry sharing the longest prefix with ``prompt`` and that length (at most
        ``len(prompt) - 1``: the last prompt token is always computed, it gives the first logits)."""
        ids = np.asarray(prompt, dtype=np.int64)
        best, best_key, best_len = None, None, 0
        for key, entry in self._entries.items():
            n = common_prefix_length(entry.tokens, ids)
            if n > best_len:
                best, best_key, best_len = entry, key, n
        if best_key is not None:
            self._entries.move_to_end(best_key)
        return best, min(best_len, max(len(ids) - 1, 0))

    def add(self, tokens: Sequence[int], states: LayerStates) -> None:
        """Store a sequence; entries that are prefixes of it are dropped (it supersedes them)."""
        ids = np.asarray(tokens, dtype=np.int64)
        if len(ids) == 0 or len(ids) > self.max_tokens:
            return
        for key in [k for k, e in self._entries.items() if self._is_prefix(e.tokens, ids)]:
            self._drop(key)
        self._entries[self._next_key] = CachedSequence(ids, states)
        self._next_key += 1
        self.tokens_held += len(ids)
        while self.tokens_held > self.max_tokens:
            self._drop(next(iter(self._entries)))

    @staticmethod
    def _is_prefix(short: np.ndarray, long: np.ndarray) -> bool:
        return len(short) <= len(long) and common_prefix_length(short, long) == len(short)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.tokens_held -= len(entry.tokens)

    def clear(self) -> None:
        self._entries.clear()
        self.tokens_held = 0


def left_padded_states(reused: Sequence[tuple[CachedSequence | None, int]], like: LayerStates) -> LayerStates:
    """Stack each row's reused prefix into batch tensors [rows, kv_heads, width, head_dim], padded
    on the left with zeros to the longest one. ``like`` gives shapes, dtype and device for rows
    that reuse nothing."""
    width = max(n for _, n in reused)
    stacked: LayerStates = []
    for layer, (k_like, v_like) in enumerate(like):
        heads, _, dim = k_like.shape
        keys = k_like.new_zeros((len(reused), heads, width, dim))
        values = v_like.new_zeros((len(reused), heads, width, v_like.shape[-1]))
        for row, (entry, n) in enumerate(reused):
            if entry is not None and n:
                k, v = entry.states[layer]
                keys[row, :, width - n :] = k[:, :n]
                values[row, :, width - n :] = v[:, :n]
        stacked.append((keys, values))
    return stacked


def row_states(batch_states: LayerStates, row: int, slots: torch.Tensor) -> LayerStates:
    """One row's keys and values at the given cache slots, copied out of the batch tensors."""
    return [(k[row][:, slots].clone(), v[row][:, slots].clone()) for k, v in batch_states]

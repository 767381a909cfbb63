"""Automatic prefix caching for local generation: keep the keys and values of recent sequences and
start the next request from the longest prefix they share with it.

An agent's prompt at step t+1 is its prompt at step t, its reply and the new observation, so with
a full-history prompt almost every token of a step was already computed at the step before. The
cache stores, per finished sequence, its token ids and each layer's keys and values (RoPE already
applied, so they are valid wherever they sit in a later batch); a new batch is assembled with the
reused part left-padded and the new tokens after it, and the attention mask hides the padding.
Entries are evicted least-recently-used past a token budget.

Entries are indexed by a hash chain over blocks of :data:`BLOCK` tokens (the hash of a block and
of every block before it), so a lookup walks the prompt's blocks while some entry shares them and
then measures the common prefix exactly with the few entries that share the most blocks; and a
new sequence finds the entries it supersedes (its prefixes) the same way. Comparing each request
with every entry instead (``INDEXED`` off) cost more than generation itself for 100 rows of
2,000-token histories: a few thousand entries, each compared at every lookup and every add.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
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


#: tokens per block of the prefix index
BLOCK = 32

#: look prefixes up through the block index; off only to measure what it saves (every request is
#: then compared with every entry)
INDEXED = True

#: the index key of sequences shorter than one block
_NO_BLOCK = ("no block",)


def block_chain(ids: np.ndarray) -> Iterator[int]:
    """Hashes of ``ids``' full blocks in order, each of the block and of every block before it:
    two sequences share a hash only if they share every token up to the end of that block (up to
    a hash collision, which could only make a lookup miss its best entry: the prefix a lookup
    reports is always measured token by token)."""
    raw, step, h = ids.tobytes(), BLOCK * ids.itemsize, 0
    for i in range(len(ids) // BLOCK):
        h = hash((h, raw[i * step : (i + 1) * step]))
        yield h


class PrefixCache:
    """Keys and values of recent sequences, looked up by longest common token prefix.

    Args:
        max_tokens: the most tokens held over all entries; older entries are evicted first.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        #: least recently used first
        self._entries: OrderedDict[int, CachedSequence] = OrderedDict()
        self._next_key = 0
        self.tokens_held = 0
        #: per entry its block chain; per chain hash the entries holding that block prefix, and
        #: the entries whose last full block it is (or that have none: ``_NO_BLOCK``)
        self._chains: dict[int, list[int]] = {}
        self._holding: dict[object, set[int]] = {}
        self._ending: dict[object, set[int]] = {}
        #: per entry when it was last used: the order of ``_entries``
        self._used: dict[int, int] = {}
        self._clock = 0
        #: prompt tokens served from the cache and computed afresh, over the cache's life
        self.reused_tokens = 0
        self.computed_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: Sequence[int]) -> tuple[CachedSequence | None, int]:
        """The entry sharing the longest prefix with ``prompt`` and that length (at most
        ``len(prompt) - 1``: the last prompt token is always computed, it gives the first logits).
        Of entries sharing as much, the least recently used."""
        ids = np.asarray(prompt, dtype=np.int64)
        # the longest shared prefix; of equals, the least recently used (the smallest clock)
        scored = [
            (common_prefix_length(self._entries[key].tokens, ids), -self._used[key], key)
            for key in self._candidates(ids)
        ]
        n, _, key = max(scored, default=(0, 0, -1))
        if n == 0:
            return None, 0
        self._touch(key)
        return self._entries[key], min(n, max(len(ids) - 1, 0))

    def _candidates(self, ids: np.ndarray) -> Sequence[int]:
        """The entries that may share the longest prefix with ``ids``: those sharing the most
        full blocks with it (an entry sharing fewer shares less), or every entry."""
        if not INDEXED:
            return list(self._entries)
        shared: set[int] | None = None
        for h in block_chain(ids):
            holding = self._holding.get(h)
            if not holding:
                break
            shared = holding
        return list(self._entries) if shared is None else list(shared)

    def add(self, tokens: Sequence[int], states: LayerStates) -> None:
        """Store a sequence; entries that are prefixes of it are dropped (it supersedes them)."""
        ids = np.asarray(tokens, dtype=np.int64)
        if len(ids) == 0 or len(ids) > self.max_tokens:
            return
        chain = list(block_chain(ids))
        if INDEXED:
            # a prefix of ids ends in one of ids' blocks, or before its first full block
            ending = [k for h in [_NO_BLOCK, *chain] for k in self._ending.get(h, ())]
        else:
            ending = list(self._entries)
        for key in [k for k in ending if self._is_prefix(self._entries[k].tokens, ids)]:
            self._drop(key)
        key = self._next_key
        self._next_key += 1
        self._entries[key] = CachedSequence(ids, states)
        self._chains[key] = chain
        for h in chain:
            self._holding.setdefault(h, set()).add(key)
        self._ending.setdefault(chain[-1] if chain else _NO_BLOCK, set()).add(key)
        self._touch(key)
        self.tokens_held += len(ids)
        while self.tokens_held > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def _touch(self, key: int) -> None:
        self._entries.move_to_end(key)
        self._used[key] = self._clock
        self._clock += 1

    @staticmethod
    def _is_prefix(short: np.ndarray, long: np.ndarray) -> bool:
        return len(short) <= len(long) and common_prefix_length(short, long) == len(short)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.tokens_held -= len(entry.tokens)
        chain = self._chains.pop(key)
        for h in chain:
            holding = self._holding[h]
            holding.discard(key)
            if not holding:
                del self._holding[h]
        last = chain[-1] if chain else _NO_BLOCK
        self._ending[last].discard(key)
        if not self._ending[last]:
            del self._ending[last]
        del self._used[key]

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)


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

"""The prefix cache's block index finds what comparing with every entry finds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from leap.models import prefix_cache
from leap.models.prefix_cache import BLOCK, PrefixCache


def _states(n: int):
    return [(torch.zeros(1, n, 1), torch.zeros(1, n, 1))]


def _sequences(rng: random.Random, count: int) -> list[list[int]]:
    """Sequences that share prefixes of every length with earlier ones (cut anywhere, at and
    around block boundaries too), some of them extending an earlier one whole, some short."""
    made: list[list[int]] = []
    for _ in range(count):
        if made and rng.random() < 0.8:
            base = rng.choice(made)
            cut = rng.choice([len(base), rng.randrange(len(base) + 1), BLOCK * rng.randrange(4), BLOCK + 1])
            tail = [rng.randrange(5) for _ in range(rng.randrange(0, 3 * BLOCK))]
            made.append(base[: min(cut, len(base))] + tail or [1])
        else:
            made.append([rng.randrange(5) for _ in range(rng.randrange(1, 4 * BLOCK))])
    return made


class Reference:
    """The prefix cache's rules written plainly: entries least recently used first; a lookup
    takes the first entry sharing the longest prefix; an add drops its prefixes, then the least
    recently used entries past the budget."""

    def __init__(self, budget: int) -> None:
        self.budget, self.entries = budget, []

    def lookup(self, ids: list[int]) -> tuple[list[int] | None, int]:
        best, length = None, 0
        for entry in self.entries:
            n = next(
                (k for k, (a, b) in enumerate(zip(entry, ids, strict=False)) if a != b),
                min(len(entry), len(ids)),
            )
            if n > length:
                best, length = entry, n
        if best is not None:
            self.entries.remove(best)
            self.entries.append(best)
        return best, min(length, max(len(ids) - 1, 0))

    def add(self, ids: list[int]) -> None:
        if not ids or len(ids) > self.budget:
            return
        self.entries = [e for e in self.entries if not (len(e) <= len(ids) and ids[: len(e)] == e)]
        self.entries.append(ids)
        while sum(map(len, self.entries)) > self.budget:
            self.entries.pop(0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("indexed", [True, False])
def test_the_cache_follows_its_rules_with_and_without_the_index(
    seed: int, indexed: bool, monkeypatch
) -> None:
    monkeypatch.setattr(prefix_cache, "INDEXED", indexed)
    rng = random.Random(seed)
    budget = rng.choice([200, 600, 5000])
    cache, reference = PrefixCache(budget), Reference(budget)
    deepest = 0
    for ids in _sequences(rng, 150):
        if rng.random() < 0.5:
            (entry, n), (expected, length) = cache.lookup(ids), reference.lookup(ids)
            assert n == length and (entry.tokens.tolist() if entry else None) == expected
            deepest = max(deepest, n)
        else:
            cache.add(ids, _states(len(ids)))
            reference.add(ids)
        assert [e.tokens.tolist() for e in cache._entries.values()] == reference.entries
        assert cache.tokens_held == sum(map(len, reference.entries)) <= budget
    assert deepest > BLOCK  # lookups went through blocks of the index
    cache.clear()
    assert len(cache) == cache.tokens_held == 0 and not cache._holding and not cache._ending


def test_an_agents_next_prompt_is_compared_with_its_own_history_only() -> None:
    """Each of 30 episodes' prompts extends its own last sequence: the index leaves one entry to
    compare, where a full scan compares all of them."""
    rng = random.Random(0)
    system = [rng.randrange(50) for _ in range(3 * BLOCK)]  # shared by every episode
    cache = PrefixCache(10**6)
    histories = [system + [rng.randrange(50) for _ in range(40)] for _ in range(30)]
    for _ in range(5):
        for i, history in enumerate(histories):
            cache.lookup(history)
            reply = [rng.randrange(50) for _ in range(20)]
            cache.add(history + reply, _states(len(history) + 20))
            histories[i] = history + reply + [rng.randrange(50) for _ in range(30)]
    assert len(cache) == 30
    for history in histories:
        assert len(cache._candidates(np.asarray(history))) == 1
        assert cache.lookup(history)[1] == len(history) - 30

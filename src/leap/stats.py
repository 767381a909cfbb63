"""Honest numbers: a success rate with its 95 % interval, and a paired comparison of two policies.

- ``wilson``: the Wilson score interval of a binomial proportion (well behaved at 0 % and 100 %
  and for small n, unlike the normal approximation).
- ``paired_difference``: two policies on the same tasks; the mean difference with a percentile
  bootstrap interval over tasks (resampling tasks keeps each task's pair together, so what the
  two policies share cancels out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: the normal quantile of a two-sided 95 % interval
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (``(0, 1)`` when n is 0)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def paired_difference(
    baseline: Mapping[str, float],
    other: Mapping[str, float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """``other`` minus ``baseline`` on the tasks both were run on (task id -> success or score).

    Returns the number of paired tasks, each side's mean, the mean difference, its percentile
    bootstrap interval, and the tasks only one of them solved (wins and losses of ``other``)."""
    tasks = sorted(set(baseline) & set(other))
    a = np.array([float(baseline[t]) for t in tasks])
    b = np.array([float(other[t]) for t in tasks])
    n = len(tasks)
    if n == 0:
        return {"n": 0, "baseline": 0.0, "other": 0.0, "difference": 0.0, "low": 0.0, "high": 0.0}
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {
        "n": n,
        "baseline": float(a.mean()),
        "other": float(b.mean()),
        "difference": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
    }


def interval_text(rate: float, n: int, successes: int | None = None) -> str:
    """'[2.2, 47.1]': the Wilson 95 % interval of a success rate, in %."""
    low, high = wilson(round(rate * n) if successes is None else successes, n)
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def rate_text(rate: float, n: int, successes: int | None = None) -> str:
    """'12.5 % [2.2, 47.1] (n=8)': a success rate with its Wilson 95 % interval."""
    return f"{100 * rate:.1f} % {interval_text(rate, n, successes)} (n={n})"


def difference_text(comparison: Mapping[str, Any]) -> str:
    """'+6.0 points [+1.0, +11.0] on 100 paired tasks (9 won, 3 lost)'."""
    c = comparison
    return (
        f"{100 * c['difference']:+.1f} points [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] "
        f"on {c['n']} paired tasks ({c.get('wins', 0)} won, {c.get('losses', 0)} lost)"
    )


def mean_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean and a 95 % interval over repeated runs (seeds), from Student's t: with 2 or 3 seeds
    a normal interval would be 6.5 or 2.2 times too narrow. One value gives no interval (None
    bounds)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if len(x) else 0.0
    if len(x) < 2:
        return mean, None, None
    half = float(t.ppf(0.975, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half

"""Intervals and paired comparisons, checked against values computed by hand."""

from __future__ import annotations

import pytest

from leap.stats import difference_text, mean_interval, paired_difference, rate_text, wilson


def test_wilson_matches_known_values() -> None:
    # 1 of 10: the Wilson interval is [0.0179, 0.4042] (z = 1.96)
    low, high = wilson(1, 10)
    assert low == pytest.approx(0.01788, abs=1e-4) and high == pytest.approx(0.40415, abs=1e-4)
    assert wilson(0, 30)[0] == 0.0 and wilson(0, 30)[1] == pytest.approx(0.1135, abs=1e-4)
    assert wilson(30, 30)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    assert rate_text(0.125, 8) == "12.5 % [2.2, 47.1] (n=8)"


def test_paired_difference_pairs_tasks_and_brackets_the_effect() -> None:
    base = {f"t{i}": 0.0 for i in range(100)}
    other = {f"t{i}": 1.0 if i < 20 else 0.0 for i in range(100)}
    other["only-here"] = 1.0  # a task the baseline never ran is not compared
    c = paired_difference(base, other, seed=1)
    assert c["n"] == 100 and c["difference"] == pytest.approx(0.2) and c["wins"] == 20 and c["losses"] == 0
    assert 0.1 < c["low"] < 0.2 < c["high"] < 0.3
    same = paired_difference(other, other)
    assert same["difference"] == same["low"] == same["high"] == 0.0
    assert difference_text(c).startswith("+20.0 points [+")
    assert paired_difference({}, {})["n"] == 0


def test_mean_interval_over_seeds_uses_students_t() -> None:
    """Three seeds: t with 2 degrees of freedom (4.303), not the normal 1.96; one seed: no
    interval."""
    mean, low, high = mean_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and low == pytest.approx(0.2 - 4.303 * 0.1 / 3**0.5, abs=1e-4)
    assert high - mean == pytest.approx(mean - low)
    assert mean_interval([0.0, 0.2])[2] == pytest.approx(0.1 + 12.706 * 0.1414214 / 2**0.5, abs=1e-4)
    # many seeds: close to the normal quantile (t with 39 degrees of freedom: 2.023)
    many = [0.0, 1.0] * 20
    assert mean_interval(many)[2] == pytest.approx(0.5 + 2.023 * 0.5064 / 40**0.5, abs=1e-3)
    assert mean_interval([0.4]) == (0.4, None, None)

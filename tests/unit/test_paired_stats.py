"""Paired statistics against values computed by hand (and by reference implementations)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from branchwise.orchestrator.paired_stats import (
    bootstrap_difference,
    holm,
    mcnemar_exact,
    paired_test,
)


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    # scipy.stats.binomtest(1, 10, 0.5).pvalue == 0.021484375 (= 2 * 11 / 1024)
    assert mcnemar_exact(1, 9) == 0.021484375
    assert mcnemar_exact(9, 1) == 0.021484375
    # binomtest(2, 12).pvalue == 0.03857421875 (= 2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(2, 10) == pytest.approx(0.03857421875)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert 0 < mcnemar_exact(560, 640) < 0.03  # n = 1200: past a float's 2**1023
    with pytest.raises(ValueError, match="must be >= 0"):
        mcnemar_exact(-1, 2)


def test_holm_steps_down_and_keeps_the_order() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(2000) < 0.6
    b = np.where(rng.random(2000) < 0.8, a, ~a)  # correlated with a, as two arms are
    diff, low, high = bootstrap_difference(list(a), list(b), seed=3)
    d = a.astype(float) - b.astype(float)
    half = 1.959964 * d.std(ddof=1) / math.sqrt(len(d))
    assert diff == pytest.approx(d.mean())
    assert low == pytest.approx(d.mean() - half, abs=0.004)
    assert high == pytest.approx(d.mean() + half, abs=0.004)
    assert bootstrap_difference(list(a), list(b), seed=3) == (diff, low, high)  # seeded


def test_bootstrap_of_identical_or_shifted_outcomes_is_a_point() -> None:
    assert bootstrap_difference([1, 0, 1], [1, 0, 1]) == (0.0, 0.0, 0.0)
    assert bootstrap_difference([1.0, 1.0], [0.0, 0.0]) == (1.0, 1.0, 1.0)
    assert bootstrap_difference([], []) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_difference([1], [1, 0])


def test_paired_test_pairs_by_problem_id() -> None:
    a = {"p1": True, "p2": True, "p3": False, "p4": True, "extra": True}
    b = {"p4": False, "p3": True, "p2": True, "p1": False}
    t = paired_test(a, b)
    assert (t.shared, t.a_correct, t.b_correct, t.only_a, t.only_b) == (4, 3, 2, 2, 1)
    assert t.difference == pytest.approx(0.25)
    assert t.p_value == 1.0 and not t.significant
    assert t.to_dict()["ci95"][0] <= 0.25 <= t.to_dict()["ci95"][1]

"""Paired tests of two systems graded on the same problems, and Holm's correction.

Two runs (or two benchmark rows) that answered the same problems are compared problem by
problem, never as two independent accuracies: the arms share samples (per-node seeds follow
the path), so their outcomes are correlated and an unpaired test both wastes power and
misstates the noise. The test is McNemar's exact test on the discordant problems (a
binomial(b + c, 1/2) tail, summed exactly in integers); the interval is a percentile
bootstrap of the mean per-problem difference (numpy draws all resamples at once). A report
that makes several claims corrects their p-values with Holm's step-down method, which holds
the family-wise error rate without assuming the claims are independent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

RESAMPLES = 10_000
CONFIDENCE = 0.95


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial(b + c, 1/2) test on discordant pairs."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, float(Fraction(2 * tail, 2**n)))  # exact: 2**n overflows a float


def bootstrap_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean of a - b, low, high): a percentile bootstrap over problems, pairs kept together.

    ``a[i]`` and ``b[i]`` are the two systems' outcomes (1/0, or any per-problem value) on
    problem ``i``; the same seed gives the same interval.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not a:
        return 0.0, 0.0, 0.0
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (a claim holds if its value < alpha)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """Two systems on the problems both graded: counts, the difference and its test."""

    shared: int
    a_correct: int
    b_correct: int
    only_a: int
    only_b: int
    difference: float  # accuracy of A minus accuracy of B, on the shared problems
    ci95: tuple[float, float]  # bootstrap interval of ``difference``
    p_value: float  # exact McNemar

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95), "significant": self.significant}


def paired_test(
    a: Mapping[str, bool], b: Mapping[str, bool], *, seed: int = 0, resamples: int = RESAMPLES
) -> PairedTest:
    """Pair two systems' correctness by problem id and test the difference."""
    shared = sorted(set(a) & set(b))
    right_a = [bool(a[p]) for p in shared]
    right_b = [bool(b[p]) for p in shared]
    only_a = sum(x and not y for x, y in zip(right_a, right_b, strict=True))
    only_b = sum(y and not x for x, y in zip(right_a, right_b, strict=True))
    difference, low, high = bootstrap_difference(right_a, right_b, seed=seed, resamples=resamples)
    return PairedTest(
        shared=len(shared),
        a_correct=sum(right_a),
        b_correct=sum(right_b),
        only_a=only_a,
        only_b=only_b,
        difference=difference,
        ci95=(low, high),
        p_value=mcnemar_exact(only_a, only_b),
    )

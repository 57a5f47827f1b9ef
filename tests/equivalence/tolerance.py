"""Two-sample checks for the equivalence tests, with the tolerance stated in one place.

Every comparison is a two-sample z statistic; a check fails beyond ``Z_LIMIT`` standard errors.
At 4.5 a single comparison of equal behaviours fails with probability 7e-6, so a test making a
few dozen comparisons stays below 1e-3, while the planted deviations move at least one
statistic by far more (the tests show it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

Z_LIMIT = 4.5


def mean_z(a: Sequence[float], b: Sequence[float]) -> float:
    """z of the difference of two sample means (unpaired)."""
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    diff = statistics.fmean(a) - statistics.fmean(b)
    return 0.0 if se == 0 and diff == 0 else diff / se if se else math.inf


def paired_z(a: Sequence[float], b: Sequence[float]) -> float:
    """z of the mean of paired differences (the same tree under both searches)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    se = math.sqrt(statistics.variance(diffs) / len(diffs))
    mean = statistics.fmean(diffs)
    return 0.0 if se == 0 and mean == 0 else mean / se if se else math.inf


def share_z(count_a: int, total_a: int, count_b: int, total_b: int) -> float:
    """z of the difference of two proportions (pooled standard error)."""
    pooled = (count_a + count_b) / (total_a + total_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    diff = count_a / total_a - count_b / total_b
    return 0.0 if se == 0 and diff == 0 else diff / se if se else math.inf


def histogram_values(histogram: Mapping[str, int], step: int) -> list[float]:
    """The samples of a "step:value" histogram at one step."""
    out: list[float] = []
    for key, count in histogram.items():
        at, value = key.split(":")
        if int(at) == step:
            out += [float(value)] * count
    return out

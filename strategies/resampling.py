"""Pure resampling tools for particle methods: ESS, multinomial and systematic resampling.

Weights need not be normalised; they must be finite, non-negative and not all zero.
Resamplers return ancestor indices in ascending order, so the result depends only on the
weights and the random draws, never on how the caller stores particles.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence

__all__ = [
    "effective_sample_size",
    "multinomial_resample",
    "normalise",
    "softmax",
    "systematic_resample",
]


def normalise(weights: Sequence[float]) -> list[float]:
    """Weights scaled to sum to one; ValueError for negative, non-finite or all-zero input."""
    for w in weights:
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite and non-negative, got {w!r}")
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return [w / total for w in weights]


def softmax(logits: Sequence[float]) -> list[float]:
    """exp(logits) normalised, computed stably (the largest logit is subtracted first)."""
    if not logits:
        return []
    top = max(logits)
    return normalise([math.exp(x - top) for x in logits])


def effective_sample_size(weights: Sequence[float]) -> float:
    """Kish's ESS = 1 / sum(w_i^2) of the normalised weights: N when uniform, 1 when degenerate."""
    if not weights:
        return 0.0
    return 1.0 / math.fsum(w * w for w in normalise(weights))


def multinomial_resample(weights: Sequence[float], count: int, rng: random.Random) -> list[int]:
    """``count`` independent draws of an index with probability proportional to its weight."""
    cumulative = list(itertools.accumulate(normalise(weights)))
    return sorted(_locate(cumulative, rng.random()) for _ in range(count))


def systematic_resample(weights: Sequence[float], count: int, rng: random.Random) -> list[int]:
    """One uniform offset, then ``count`` evenly spaced pointers through the cumulative weights.

    Lower variance than multinomial: index i is drawn floor(count * w_i) or ceil(count * w_i)
    times.
    """
    cumulative = list(itertools.accumulate(normalise(weights)))
    offset = rng.random()
    return [_locate(cumulative, (offset + k) / count) for k in range(count)]


def _locate(cumulative: list[float], u: float) -> int:
    # Rounding can leave the last cumulative weight a hair below 1: clamp to the last index.
    return min(bisect.bisect_right(cumulative, u), len(cumulative) - 1)

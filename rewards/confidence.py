"""Token-level confidence and entropy from top-k log-probabilities (pure functions).

DeepConf (Fu et al. 2025, "Deep Think with Confidence") measures how sure a model is at a
position by the negative mean log-probability of its top-k candidates: a peaked distribution
has very unlikely runners-up, hence a large value. A trace's *group confidence* is that value
averaged over a sliding window of tokens; its weakest window (or its tail, or its mean) says how
much to trust the whole trace. Entropy-adaptive branching (EAGer) instead asks for the
predictive entropy at each position, estimated from the renormalised top-k.

Positions without logprobs (an engine that returned none there) are skipped, never filled in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Literal

ConfidenceMeasure = Literal["lowest_group", "bottom_group", "tail", "mean"]


def token_confidence(top_logprobs: Sequence[float]) -> float:
    """Minus the mean of a position's top-k log-probabilities (higher is more confident)."""
    if not top_logprobs:
        raise ValueError("token confidence needs at least one top logprob")
    return -sum(top_logprobs) / len(top_logprobs)


def token_confidences(tops: Sequence[Sequence[float]]) -> list[float]:
    """Token confidence of every position that has top-k logprobs."""
    return [token_confidence(top) for top in tops if top]


def predictive_entropy(top_logprobs: Sequence[float]) -> float:
    """Entropy (nats) of the top-k distribution renormalised to sum to one.

    It lies in [0, ln k]; the mass outside the top k is ignored, so it underestimates the
    full entropy when the tail is heavy.
    """
    if not top_logprobs:
        raise ValueError("entropy needs at least one top logprob")
    peak = max(top_logprobs)
    weights = [math.exp(lp - peak) for lp in top_logprobs]
    total = sum(weights)
    return -sum(w / total * math.log(w / total) for w in weights if w > 0)


def effective_window(length: int, window: int) -> int:
    """The window a trace of ``length`` tokens is judged by: shrunk to fit short traces."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return max(1, min(window, length))


def group_confidences(confidences: Sequence[float], window: int) -> list[float]:
    """Mean confidence of every full sliding window (shrunk to the trace if shorter)."""
    if not confidences:
        return []
    size = effective_window(len(confidences), window)
    total = sum(confidences[:size])
    groups = [total / size]
    for end in range(size, len(confidences)):
        total += confidences[end] - confidences[end - size]
        groups.append(total / size)
    return groups


def lowest_group_confidence(confidences: Sequence[float], window: int) -> float:
    """The weakest window of a trace (DeepConf's lowest group confidence)."""
    groups = group_confidences(confidences, window)
    if not groups:
        raise ValueError("a trace without confidences has no group confidence")
    return min(groups)


def bottom_group_confidence(confidences: Sequence[float], window: int, share: float) -> float:
    """Mean of the lowest ``share`` of a trace's window confidences (at least one window)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    groups = sorted(group_confidences(confidences, window))
    if not groups:
        raise ValueError("a trace without confidences has no group confidence")
    count = max(1, math.ceil(share * len(groups)))
    return sum(groups[:count]) / count


def tail_confidence(confidences: Sequence[float], tail: int) -> float:
    """Mean confidence of the last ``tail`` tokens (where the answer is written)."""
    if not confidences:
        raise ValueError("a trace without confidences has no tail confidence")
    last = confidences[-max(1, tail) :]
    return sum(last) / len(last)


def trace_confidence(
    tops: Sequence[Sequence[float]],
    measure: ConfidenceMeasure,
    *,
    window: int,
    tail: int,
    bottom_share: float,
) -> float:
    """One confidence value for a whole trace from its per-position top-k logprobs."""
    confidences = token_confidences(tops)
    if measure == "lowest_group":
        return lowest_group_confidence(confidences, window)
    if measure == "bottom_group":
        return bottom_group_confidence(confidences, window, bottom_share)
    if measure == "tail":
        return tail_confidence(confidences, tail)
    if not confidences:
        raise ValueError("a trace without confidences has no mean confidence")
    return sum(confidences) / len(confidences)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class SlidingMean:
    """Running mean of the last ``window`` values, for judging a trace while it streams."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._values: deque[float] = deque()
        self._total = 0.0

    def push(self, value: float) -> float | None:
        """Add a value; the window's mean once it is full, else None."""
        self._values.append(value)
        self._total += value
        if len(self._values) > self.window:
            self._total -= self._values.popleft()
        if len(self._values) < self.window:
            return None
        return self._total / self.window

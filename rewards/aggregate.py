"""Turning per-step scores into one path score (PRM aggregation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Aggregation = Literal["min", "product", "last", "mean"]


def aggregate_steps(values: Sequence[float], how: Aggregation) -> float | None:
    """Aggregate step scores; None for an empty path (nothing to judge)."""
    if not values:
        return None
    if how == "min":
        return min(values)
    if how == "product":
        return math.prod(values)
    if how == "last":
        return values[-1]
    return sum(values) / len(values)

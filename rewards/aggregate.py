"""Turning per-step scores into one path score (PRM aggregation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class StepAggregation(BaseModel):
    """A configurable way to turn step scores into one path score.

    The four plain choices behave as :func:`aggregate_steps`. ``geometric_mean`` is the
    product normalised for length (so long paths are not punished for being long);
    ``weighted_mean`` weights step ``i`` of ``n`` by ``decay ** (n - 1 - i)``, so with
    ``decay < 1`` recent steps count more and ``decay = 1`` is the plain mean.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["min", "product", "last", "mean", "geometric_mean", "weighted_mean"] = Field(
        "min", description="How step scores combine; see the class docstring."
    )
    decay: float = Field(
        0.8, gt=0.0, le=1.0, description="weighted_mean: weight ratio between a step and the next."
    )
    floor: float = Field(
        1e-6, gt=0.0, lt=1.0, description="geometric_mean: scores below it count as it (log 0)."
    )

    def __call__(self, values: Sequence[float]) -> float | None:
        """The path score; None for an empty path."""
        if not values:
            return None
        if self.method == "geometric_mean":
            logs = [math.log(max(v, self.floor)) for v in values]
            return math.exp(sum(logs) / len(logs))
        if self.method == "weighted_mean":
            n = len(values)
            weights = [self.decay ** (n - 1 - i) for i in range(n)]
            return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)
        return aggregate_steps(values, self.method)

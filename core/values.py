"""The one rule that turns a scorer's verdict into a node's value.

A step-level scorer reports one value per step (``Score.step_values``) and its own path value
(``Score.value``: a reward model folds its steps by the ``aggregation`` in its config). Who
folds is declared once: by default a node's value is the scorer's ``Score.value``; a strategy
that declares ``aggregation`` folds the step values itself instead (a recipe may not declare
it in both places). A failed score has no value, never a plausible number.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from branchwise.core.graph import Score

Aggregation = Literal["min", "product", "last", "mean", "geometric_mean", "weighted_mean"]
"""How step values combine into a path value; see :class:`StepAggregation`."""


class StepAggregation(BaseModel):
    """A way to turn step values into one path value.

    min, product, last, mean: as named. ``geometric_mean`` is the product normalised for
    length (long paths are not punished for being long); ``weighted_mean`` weights step ``i``
    of ``n`` by ``decay ** (n - 1 - i)``, so with ``decay < 1`` recent steps count more.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Aggregation = Field("min", description="How step values combine.")
    decay: float = Field(
        0.8, gt=0.0, le=1.0, description="weighted_mean: weight ratio between a step and the next."
    )
    floor: float = Field(
        1e-6, gt=0.0, lt=1.0, description="geometric_mean: values below it count as it (log 0)."
    )

    def __call__(self, values: Sequence[float]) -> float | None:
        """The path value; None for an empty path (nothing to judge)."""
        if not values:
            return None
        if self.method == "min":
            return min(values)
        if self.method == "product":
            return math.prod(values)
        if self.method == "last":
            return values[-1]
        if self.method == "mean":
            return sum(values) / len(values)
        if self.method == "geometric_mean":
            logs = [math.log(max(v, self.floor)) for v in values]
            return math.exp(sum(logs) / len(logs))
        n = len(values)
        weights = [self.decay ** (n - 1 - i) for i in range(n)]
        return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)


def score_value(score: Score, aggregation: Aggregation | None = None) -> float | None:
    """A node's value from its score: None if the score failed; the step values folded by
    ``aggregation`` when one is declared and the score has steps; else ``Score.value``."""
    if not score.ok:
        return None
    if aggregation is not None and score.step_values:
        return _fold(aggregation)(score.step_values)
    return score.value


@functools.cache
def _fold(method: Aggregation) -> StepAggregation:
    # built once per method: searches ask for values in their inner loops
    return StepAggregation(method=method)

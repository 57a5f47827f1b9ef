"""A two-component Weibull mixture fitted by EM, for RPC's reasoning pruning.

RPC models the probabilities of a problem's sampled paths as a mixture of a high- and a
low-probability Weibull component and prunes the paths the low one explains better. The
project has no scipy, so the fit is EM: the E-step gives each point's membership, the M-step
fits each component by weighted maximum likelihood, where the scale has a closed form given
the shape and the shape is the root of a monotone equation (found by bisection). The mixing
weight is kept in [0.2, 0.8], as the paper's fit bounds it, so that neither component
vanishes on a handful of paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_TINY = 1e-300
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Weibull:
    shape: float
    scale: float

    def pdf(self, x: Array) -> Array:
        # in logs: z**shape may overflow for steep shapes, which must give 0, not nan
        log_z = np.log(x) - math.log(self.scale)
        with np.errstate(over="ignore"):
            log_pdf = (
                math.log(self.shape / self.scale)
                + (self.shape - 1) * log_z
                - np.exp(self.shape * log_z)
            )
        return np.asarray(np.exp(log_pdf))

    @property
    def mean(self) -> float:
        return self.scale * math.gamma(1 + 1 / self.shape)


@dataclass(frozen=True)
class WeibullMixture:
    """``high_weight`` of ``high`` plus the rest of ``low``; ``high`` has the larger mean."""

    high_weight: float
    high: Weibull
    low: Weibull

    def low_membership(self, values: Sequence[float]) -> list[float]:
        """Each value's posterior probability of coming from the low component."""
        x = np.asarray(values, dtype=np.float64)
        high = self.high_weight * self.high.pdf(x)
        low = (1 - self.high_weight) * self.low.pdf(x)
        return [float(v) for v in low / np.maximum(high + low, _TINY)]


def fit_weibull_mixture(
    values: Sequence[float],
    *,
    iterations: int = 200,
    weight_bounds: tuple[float, float] = (0.2, 0.8),
) -> WeibullMixture | None:
    """Fit two Weibull components to positive ``values`` (None if they do not spread).

    Deterministic: EM starts from a split at the mean (points above it in the high
    component), so the same values always give the same fit.
    """
    x = np.asarray([v for v in values if v > 0], dtype=np.float64)
    if len(x) < 3 or float(np.ptp(x)) <= 1e-12 * float(np.max(x)):
        return None
    high_r = (x > x.mean()).astype(np.float64)
    high_r = np.clip(high_r, 0.05, 0.95)
    low_bound, high_bound = weight_bounds
    weight = float(np.clip(high_r.mean(), low_bound, high_bound))
    high = _weighted_fit(x, high_r)
    low = _weighted_fit(x, 1 - high_r)
    for _ in range(iterations):
        a = weight * high.pdf(x)
        b = (1 - weight) * low.pdf(x)
        new_r = a / np.maximum(a + b, _TINY)
        weight = float(np.clip(new_r.mean(), low_bound, high_bound))
        high = _weighted_fit(x, new_r, high.shape)
        low = _weighted_fit(x, 1 - new_r, low.shape)
        if float(np.max(np.abs(new_r - high_r))) < 1e-6:
            break
        high_r = new_r
    if high.mean < low.mean:
        high, low, weight = low, high, 1 - weight
    return WeibullMixture(weight, high, low)


def _weighted_fit(x: Array, w: Array, guess: float | None = None) -> Weibull:
    """Weighted Weibull MLE: the shape solves a monotone equation, the scale follows.

    ``guess`` (the previous EM step's shape) narrows the bracket the root is sought in."""
    total = float(w.sum())
    if total <= _TINY:
        return Weibull(1.0, float(x.mean()))
    logs = np.log(x)
    log_w = np.log(np.maximum(w, _TINY))
    mean_log = float((w * logs).sum()) / total

    def gap(k: float) -> float:
        # d/dk of the profile log-likelihood, up to a positive factor; increasing in k.
        # The weights w * x**k are normalised in logs so steep shapes do not underflow.
        powered = _normalised(log_w + k * logs)
        return float((powered * logs).sum()) - 1 / k - mean_log

    lo, hi = (1e-3, 1.0) if guess is None else (guess / 2, guess * 2)
    while gap(lo) > 0 and lo > 1e-3:
        lo /= 2
    while gap(hi) < 0 and hi < 1e4:
        hi *= 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if gap(mid) < 0:
            lo = mid
        else:
            hi = mid
    k = (lo + hi) / 2
    log_moment = _log_sum_exp(log_w + k * logs) - math.log(total)
    return Weibull(k, math.exp(log_moment / k))


def _log_sum_exp(values: Array) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def _normalised(log_weights: Array) -> Array:
    weights = np.exp(log_weights - log_weights.max())
    return np.asarray(weights / weights.sum())

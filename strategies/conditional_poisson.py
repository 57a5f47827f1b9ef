"""Conditional Poisson sampling: K of N items without replacement, P(set) ∝ product of weights."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

_NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    top = max(a, b)
    return top + math.log1p(math.exp(-abs(a - b)))


def _elementary_table(log_weights: Sequence[float], k: int) -> list[list[float]]:
    """``table[i][j]``: log of the elementary symmetric polynomial of order ``j`` over the
    first ``i`` weights (the normaliser of every size-``j`` subset of them)."""
    table = [[0.0] + [_NEG_INF] * k]
    for i, lw in enumerate(log_weights, 1):
        prev = table[-1]
        row = [0.0] + [_NEG_INF] * k
        for j in range(1, min(i, k) + 1):
            row[j] = _logaddexp(prev[j], lw + prev[j - 1])
        table.append(row)
    return table


def conditional_poisson_sample(
    log_weights: Sequence[float], k: int, rng: random.Random
) -> list[int]:
    """Indices of ``k`` items drawn without replacement with P(S) ∝ prod_{i in S} w_i, in
    ascending order (exact, by the elementary-symmetric-polynomial recursion, O(N*k)).

    Items of weight 0 (log -inf) are drawn only when fewer than ``k`` items weigh more; then
    they fill the set in index order. All items are returned when there are at most ``k``.
    """
    n = len(log_weights)
    if n <= k:
        return list(range(n))
    positive = [i for i, lw in enumerate(log_weights) if lw != _NEG_INF]
    if len(positive) <= k:
        rest = [i for i in range(n) if i not in set(positive)]
        return sorted(positive + rest[: k - len(positive)])
    weights = [log_weights[i] for i in positive]
    table = _elementary_table(weights, k)
    chosen: list[int] = []
    need = k
    for i in range(len(weights), 0, -1):
        if need == 0:
            break
        if need == i:  # every remaining item must be taken
            chosen.extend(positive[:i])
            break
        take = math.exp(weights[i - 1] + table[i - 1][need - 1] - table[i][need])
        if rng.random() < take:
            chosen.append(positive[i - 1])
            need -= 1
    return sorted(chosen)


def inclusion_probabilities(log_weights: Sequence[float], k: int) -> list[float]:
    """Each item's probability of being in the conditional Poisson sample of size ``k`` (for
    Horvitz-Thompson estimates over the kept set): pi_i = w_i * e_{k-1}(others) / e_k(all)."""
    n = len(log_weights)
    if n <= k:
        return [1.0] * n
    total = _elementary_table(log_weights, k)[n][k]
    out = []
    for i, lw in enumerate(log_weights):
        others = [w for j, w in enumerate(log_weights) if j != i]
        if lw == _NEG_INF or total == _NEG_INF:
            out.append(0.0)
            continue
        out.append(math.exp(lw + _elementary_table(others, k - 1)[n - 1][k - 1] - total))
    return out

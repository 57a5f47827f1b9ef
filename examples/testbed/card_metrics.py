"""Small, dependency-free metrics for the testbed's model card: pass@k and ROC AUC."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased chance that at least one of k draws (without replacement) from n is correct."""
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - correct < k:
        return 1.0
    return 1.0 - comb(n - correct, k) / comb(n, k)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random positive outscores a random negative (ties count one half)."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    pairs = sorted(zip(scores, labels, strict=True))
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + j + 1) / 2  # average 1-based rank of the tied block
        rank_sum += mid_rank * sum(1 for _, label in pairs[i:j] if label)
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def within_problem_auc(groups: Sequence[Sequence[tuple[float, bool]]]) -> float:
    """Share of (right, wrong) solution pairs of the same problem the scores order right."""
    wins, pairs = 0.0, 0
    for group in groups:
        for right_score, right in group:
            for wrong_score, wrong in group:
                if right and not wrong:
                    pairs += 1
                    wins += 1.0 if right_score > wrong_score else 0.5 * (right_score == wrong_score)
    return wins / pairs if pairs else float("nan")

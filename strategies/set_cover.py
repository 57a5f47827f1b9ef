"""Confidence-weighted greedy set cover over the token sets of partial hypotheses.

Pure: given each hypothesis's token set and confidence, which hypotheses to keep so that the
kept ones (plus those that already finished) cover every token any hypothesis has written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """A hypothesis as the cover sees it: its lexical units and the model's confidence."""

    key: int
    units: frozenset[tuple[int, ...]]
    confidence: float


def token_units(token_ids: Sequence[int], ngram: int) -> frozenset[tuple[int, ...]]:
    """The distinct token n-grams of a sequence (n = 1: its token set)."""
    if len(token_ids) < ngram:
        return frozenset({tuple(token_ids)}) if token_ids else frozenset()
    return frozenset(tuple(token_ids[i : i + ngram]) for i in range(len(token_ids) - ngram + 1))


def weighted_cover(
    candidates: Sequence[Hypothesis],
    covered_by_finished: frozenset[tuple[int, ...]] = frozenset(),
    *,
    min_keep: int = 1,
) -> set[int]:
    """The keys of the candidates a greedy confidence-weighted cover keeps.

    The universe is every unit of the candidates and of the finished hypotheses; the finished
    ones are kept anyway, so their units start covered. Each greedy step adds the candidate
    with the largest (new units covered x confidence), i.e. the lowest cost per new unit when
    a hypothesis costs 1 / confidence; ties go to the earlier candidate. At least ``min_keep``
    candidates stay (the most confident of the rest fill up).
    """
    universe: set[tuple[int, ...]] = set(covered_by_finished)
    for hypothesis in candidates:
        universe |= hypothesis.units
    covered = set(covered_by_finished)
    kept: list[int] = []
    remaining = list(candidates)
    while covered != universe and remaining:
        best = max(
            range(len(remaining)),
            key=lambda i: (len(remaining[i].units - covered) * remaining[i].confidence, -i),
        )
        choice = remaining.pop(best)
        if not choice.units - covered:
            break
        kept.append(choice.key)
        covered |= choice.units
    by_confidence = sorted(remaining, key=lambda h: -h.confidence)  # stable: earlier first
    for hypothesis in by_confidence[: max(0, min_keep - len(kept))]:
        kept.append(hypothesis.key)
    return set(kept)

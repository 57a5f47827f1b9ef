"""Utilities for minimum Bayes risk: how much one candidate agrees with another.

A utility maps pairs ``(hypothesis, pseudo-reference)`` of finished nodes to values in [0, 1]
(higher is more agreement) or None where it could not judge (a failed judge call is never
turned into a plausible number). ``symmetric`` utilities give the same value for both orders,
so MBR asks each unordered pair once. Utilities are looked up by name in :data:`UTILITIES`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from core.graph import Node

if TYPE_CHECKING:
    from orchestrator.context import SearchContext

UtilityName = Literal["answer_equality", "chrf", "judge"]


class Utility(Protocol):
    """A pairwise agreement measure MBR can use."""

    @property
    def symmetric(self) -> bool: ...

    async def __call__(
        self, ctx: SearchContext, pairs: Sequence[tuple[Node, Node]]
    ) -> list[float | None]:
        """One value per pair (hypothesis, reference), in order."""
        ...


class AnswerEquality:
    """1 when both nodes extracted the same answer, else 0: MBR becomes majority vote."""

    symmetric = True

    async def __call__(
        self, ctx: SearchContext, pairs: Sequence[tuple[Node, Node]]
    ) -> list[float | None]:
        return [1.0 if a.answer is not None and a.answer == b.answer else 0.0 for a, b in pairs]


class ChrF:
    """chrF (Popović 2015) between the two solution texts; symmetric only when beta is 1."""

    def __init__(self, *, order: int = 6, beta: float = 1.0) -> None:
        self.order = order
        self.beta = beta

    @property
    def symmetric(self) -> bool:
        return self.beta == 1.0

    async def __call__(
        self, ctx: SearchContext, pairs: Sequence[tuple[Node, Node]]
    ) -> list[float | None]:
        return [
            chrf(ctx.solution(a), ctx.solution(b), order=self.order, beta=self.beta)
            for a, b in pairs
        ]


class PairwiseJudge:
    """Agreement judged by a recipe scorer that implements ``PairwiseScorer.compare``.

    The scorer (e.g. a policy-model judge asked whether two solutions agree) is named in the
    recipe and reached through ``ctx.compare``, so MBR stays free of prompts and engines.
    """

    def __init__(self, scorer: str, *, symmetric: bool = True) -> None:
        self.scorer = scorer
        self._symmetric = symmetric

    @property
    def symmetric(self) -> bool:
        return self._symmetric

    async def __call__(
        self, ctx: SearchContext, pairs: Sequence[tuple[Node, Node]]
    ) -> list[float | None]:
        scores = await ctx.compare(pairs, self.scorer)
        return [s.value if s.ok else None for s in scores]


def chrf(hypothesis: str, reference: str, *, order: int = 6, beta: float = 1.0) -> float:
    """Character n-gram F-score: precision and recall averaged over n = 1..order, then F-beta.

    Whitespace is ignored (as in the usual chrF). Orders longer than either text are left
    out of the averages; two texts without characters score 1 if equal, else 0.
    """
    if order < 1:
        raise ValueError(f"chrF order must be >= 1, got {order}")
    if beta <= 0:
        raise ValueError(f"chrF beta must be > 0, got {beta}")
    hyp = "".join(hypothesis.split())
    ref = "".join(reference.split())
    if not hyp or not ref:
        return 1.0 if hyp == ref else 0.0
    precisions: list[float] = []
    recalls: list[float] = []
    for n in range(1, order + 1):
        hyp_grams = _ngrams(hyp, n)
        ref_grams = _ngrams(ref, n)
        if not hyp_grams or not ref_grams:
            break
        matches = sum((hyp_grams & ref_grams).values())
        precisions.append(matches / sum(hyp_grams.values()))
        recalls.append(matches / sum(ref_grams.values()))
    precision = sum(precisions) / len(precisions)
    recall = sum(recalls) / len(recalls)
    if precision == 0 and recall == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def build_utility(
    name: UtilityName,
    *,
    chrf_order: int = 6,
    chrf_beta: float = 1.0,
    scorer: str | None = None,
    judge_symmetric: bool = True,
) -> Utility:
    """The named utility, configured."""
    if name == "answer_equality":
        return AnswerEquality()
    if name == "chrf":
        return ChrF(order=chrf_order, beta=chrf_beta)
    if scorer is None:
        raise ValueError("utility 'judge' needs a pairwise scorer name")
    return PairwiseJudge(scorer, symmetric=judge_symmetric)


UTILITIES: dict[str, str] = {
    "answer_equality": "1 if the extracted answers are equal (MBR = majority vote).",
    "chrf": "character n-gram F-score between the solution texts.",
    "judge": "a recipe scorer's PairwiseScorer.compare verdict on the two candidates.",
}

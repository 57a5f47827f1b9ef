"""Best-of-N: sample N solutions, score them, keep the best (or the best-weighted answer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from branchwise.core.graph import Node, Score
from branchwise.rewards.aggregate import Aggregation, aggregate_steps
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import argmax, weighted_vote

if TYPE_CHECKING:
    from branchwise.orchestrator.context import SearchContext


class BestOfNConfig(StrategyConfig):
    name: Literal["best_of_n"] = "best_of_n"
    n: int = Field(8, ge=1, description="Solutions sampled.")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    scorer: str = Field(description="Scorer (by recipe name) that ranks the solutions.")
    aggregation: Aggregation = Field(
        "min", description="How step scores become a path score (step-level scorers only)."
    )
    weighted: bool = Field(
        False, description="Sum scores per distinct answer and pick the answer (weighted BoN)."
    )


class BestOfN(Strategy):
    """Best-of-N (Cobbe et al. 2021; "Large Language Monkeys" for coverage).

    Cost: N samples, one generation request per ``batch``, N scorer calls. With ``weighted``
    the scores of equal answers are added, which mixes voting with the scorer's ranking.
    Failed scores never win and never add weight.
    """

    config_model = BestOfNConfig
    description = "Sample N solutions and keep the one the scorer ranks highest."

    def __init__(self, config: BestOfNConfig) -> None:
        super().__init__(config)
        self.cfg = config

    async def search(self, ctx: SearchContext) -> SearchResult:
        nodes = await sample_solutions(ctx, self.cfg.n, self.cfg.batch)
        scores = await ctx.score(nodes, self.cfg.scorer)
        return self._select(nodes, scores)

    def anytime(self, ctx: SearchContext) -> SearchResult:
        finished = ctx.graph.terminals()
        scores = [ctx.graph.score(n.id, self.cfg.scorer) for n in finished]
        if finished and all(s is not None for s in scores):
            result = self._select(finished, [s for s in scores if s is not None])
            return SearchResult(result.answer, result.node_id, {"anytime": True, **result.detail})
        return super().anytime(ctx)

    def _select(self, nodes: list[Node], scores: list[Score]) -> SearchResult:
        value = {n.id: self._value(s) for n, s in zip(nodes, scores, strict=True)}
        failed = sum(1 for s in scores if not s.ok)
        if self.cfg.weighted:
            picked = weighted_vote(nodes, lambda n: max(value[n.id] or 0.0, 0.0))
        else:
            picked = argmax(nodes, lambda n: value[n.id])
        detail = {"samples": len(nodes), "failed_scores": failed, **picked.detail}
        return SearchResult(picked.answer, picked.node_id, detail)

    def _value(self, score: Score) -> float | None:
        if not score.ok:
            return None
        if score.step_values:
            return aggregate_steps(score.step_values, self.cfg.aggregation)
        return score.value

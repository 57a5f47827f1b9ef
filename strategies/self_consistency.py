"""Self-consistency: sample N solutions and take the majority (or weighted) vote."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from branchwise.core.graph import Node
from branchwise.rewards.aggregate import Aggregation, aggregate_steps
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import majority_vote, weighted_vote

if TYPE_CHECKING:
    from branchwise.orchestrator.context import SearchContext


class SelfConsistencyConfig(StrategyConfig):
    name: Literal["self_consistency"] = "self_consistency"
    n: int = Field(16, ge=1, description="Solutions sampled.")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    weighting: Literal["none", "scorer", "path_probability"] = Field(
        "none",
        description="none: one vote each; scorer: weight by a scorer; path_probability: "
        "weight by exp(mean token logprob).",
    )
    scorer: str | None = Field(None, description="Scorer for weighting=scorer.")
    aggregation: Aggregation = Field("min", description="Step-score aggregation for the weight.")

    @model_validator(mode="after")
    def _scorer_when_weighted(self) -> SelfConsistencyConfig:
        if self.weighting == "scorer" and not self.scorer:
            raise ValueError("weighting 'scorer' needs `scorer` (a scorer name from the recipe)")
        return self


class SelfConsistency(Strategy):
    """Self-consistency (Wang et al. 2022): majority vote over extracted answers.

    Cost: N samples, no scorer calls unless weighted. Weighted variants add each vote's
    scorer value or path probability (exp of mean token logprob, as in RPC-style weighting).
    Solutions without an answer do not vote.
    """

    config_model = SelfConsistencyConfig
    description = "Sample N solutions and return the most common answer (optionally weighted)."
    needs_logprobs: ClassVar[bool] = False

    def __init__(self, config: SelfConsistencyConfig) -> None:
        super().__init__(config)
        self.cfg = config

    async def search(self, ctx: SearchContext) -> SearchResult:
        logprobs = 0 if self.cfg.weighting == "path_probability" else None
        nodes = await sample_solutions(ctx, self.cfg.n, self.cfg.batch, logprobs=logprobs)
        voting = [n for n in nodes if n.answer is not None]
        if self.cfg.weighting == "none":
            picked = majority_vote(voting)
        elif self.cfg.weighting == "path_probability":
            picked = weighted_vote(voting, _path_probability)
        else:
            assert self.cfg.scorer is not None
            scores = await ctx.score(voting, self.cfg.scorer)
            weights = {}
            for node, score in zip(voting, scores, strict=True):
                value = None
                if score.ok:
                    steps = score.step_values
                    value = aggregate_steps(steps, self.cfg.aggregation) if steps else score.value
                weights[node.id] = max(value or 0.0, 0.0)
            picked = weighted_vote(voting, lambda n: weights[n.id])
        detail = {"samples": len(nodes), "answered": len(voting), **picked.detail}
        return SearchResult(picked.answer, picked.node_id, detail)


def _path_probability(node: Node) -> float:
    count = len(node.token_logprobs)
    return math.exp(node.cum_logprob / count) if count else 0.0

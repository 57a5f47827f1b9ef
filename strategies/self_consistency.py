"""Self-consistency: sample N solutions and take the majority (or weighted) vote."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import OptionallyScoredConfig, SearchResult, Strategy
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import majority_vote, weighted_vote


class SelfConsistencyConfig(OptionallyScoredConfig):
    name: Literal["self_consistency"] = "self_consistency"
    n: int = Field(16, ge=1, description="Solutions sampled.")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    weighting: Literal["none", "scorer", "path_probability"] = Field(
        "none",
        description="none: one vote each; scorer: weight by a scorer's value; "
        "path_probability: weight by exp(mean token logprob).",
    )

    @model_validator(mode="after")
    def _scorer_when_weighted(self) -> SelfConsistencyConfig:
        if self.weighting == "scorer" and not self.scorer:
            raise ValueError("weighting 'scorer' needs `scorer` (a scorer name from the recipe)")
        return self


class SelfConsistency(Strategy[SelfConsistencyConfig]):
    """Self-consistency (Wang et al. 2022): majority vote over extracted answers.

    Cost: N samples, no scorer calls unless weighted. Weighted variants add each vote's
    scorer value or path probability (exp of mean token logprob, as in RPC-style weighting).
    Solutions without an answer do not vote.
    """

    config_model = SelfConsistencyConfig
    description = "Sample N solutions and return the most common answer (optionally weighted)."
    samples_independent: ClassVar[bool] = True

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        logprobs = 0 if cfg.weighting == "path_probability" else None
        nodes = await sample_solutions(port, cfg.n, cfg.batch, logprobs=logprobs)
        if cfg.weighting == "scorer":
            assert cfg.scorer is not None
            await port.score([n for n in nodes if n.answer is not None], cfg.scorer)
        picked = self.select(port)
        return SearchResult(picked.answer, picked.node_id, {**picked.detail, "samples": len(nodes)})

    def select(self, tree: TreeView) -> SearchResult:
        """The answer with the most votes (or weight) among the finished solutions."""
        cfg = self.config
        voting = [n for n in tree.terminals() if n.answer is not None]
        scorer = cfg.scorer
        if cfg.weighting == "path_probability":
            picked = weighted_vote(voting, _path_probability)
        elif (
            cfg.weighting == "scorer"
            and scorer is not None
            and all(tree.score_of(n, scorer) is not None for n in voting)
        ):
            picked = weighted_vote(voting, lambda n: max(tree.value(n, scorer) or 0.0, 0.0))
        else:  # unweighted, or cut short before every vote was scored
            picked = majority_vote(voting)
        detail = {"samples": len(voting), "answered": len(voting), **picked.detail}
        return SearchResult(picked.answer, picked.node_id, detail)


def _path_probability(node: Node) -> float:
    count = len(node.token_logprobs)
    return math.exp(node.cum_logprob / count) if count else 0.0

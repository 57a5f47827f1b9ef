"""Best-of-N: sample N solutions, score them, keep the best (or the best-weighted answer)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import argmax, weighted_vote


class BestOfNConfig(ScoredConfig):
    name: Literal["best_of_n"] = "best_of_n"
    n: int = Field(8, ge=1, description="Solutions sampled.")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    weighted: bool = Field(
        False, description="Sum scores per distinct answer and pick the answer (weighted BoN)."
    )


class BestOfN(Strategy[BestOfNConfig]):
    """Best-of-N (Cobbe et al. 2021; "Large Language Monkeys" for coverage).

    Cost: N samples, one generation request per ``batch``, N scorer calls. With ``weighted``
    the values of equal answers are added, which mixes voting with the scorer's ranking.
    Failed scores never win and never add weight.
    """

    config_model = BestOfNConfig
    description = "Sample N solutions and keep the one the scorer ranks highest."
    samples_independent: ClassVar[bool] = True

    async def search(self, port: SearchPort) -> SearchResult:
        nodes = await sample_solutions(port, self.config.n, self.config.batch)
        await port.score(nodes, self.config.scorer)
        return self.select(port)

    def select(self, tree: TreeView) -> SearchResult:
        """The finished node with the highest value (or the answer with the most weight)."""
        finished = tree.terminals()
        scores = [tree.score_of(n, self.config.scorer) for n in finished]
        if not finished or any(s is None for s in scores):
            return super().select(tree)  # cut short before every sample was scored
        failed = sum(1 for s in scores if s is not None and not s.ok)
        value = {n.id: tree.value(n, self.config.scorer) for n in finished}
        if self.config.weighted:
            picked = weighted_vote(finished, lambda n: max(value[n.id] or 0.0, 0.0))
        else:
            picked = argmax(finished, lambda n: value[n.id])
        detail = {"samples": len(finished), "failed_scores": failed, **picked.detail}
        return SearchResult(picked.answer, picked.node_id, detail)

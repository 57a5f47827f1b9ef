"""Sample, Scrutinize and Scale: the policy verifies its own candidates, pairwise tie-break."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import argmax


class SampleScrutinizeConfig(StrategyConfig):
    name: Literal["sample_scrutinize"] = "sample_scrutinize"
    n: int = Field(16, ge=1, description="Candidates sampled.")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    verifier: str = Field(
        description="Scorer (by recipe name) that verifies a candidate k times, e.g. a "
        "`self_verification` scorer on the policy engine (its `verifications` is k)."
    )
    tie_margin: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Candidates within this of the best verification score are tied.",
    )
    max_tied: int = Field(
        4, ge=1, description="Most tied candidates (distinct answers) compared pairwise."
    )
    tie_break: bool = Field(
        True, description="Compare tied candidates pairwise with the verifier; false: earliest."
    )

    def pairwise_scorers(self) -> tuple[str, ...]:
        return ("verifier",) if self.tie_break else ()


class SampleScrutinize(Strategy[SampleScrutinizeConfig]):
    """Sample, Scrutinize and Scale (Zhao et al. 2025, "Sample, Scrutinize and Scale:
    Effective Inference-Time Search by Scaling Verification").

    Sample ``n`` candidates; the verifier (the policy itself, with a verification prompt)
    checks each answered candidate k times and scores it by the share of positive verdicts.
    Candidates within ``tie_margin`` of the best score are tied; the best-scored one per
    answer (up to ``max_tied`` answers) meet in a round robin of pairwise comparisons by the
    same verifier (each asked in both orders), and the most wins (summed P(win)) is the
    answer; ties go to the earliest node. Cost: ``n`` samples, n x k verification
    generations, and t(t-1)/2 comparisons of two generations each for t tied answers; the
    ledger counts one scorer call per candidate and per pair, and the verifier's engine
    tokens in the usage (``scorer_*_tokens``). ``select`` (the anytime answer, and a stored
    tree) takes the best verification score without the tie-break, whose verdicts are not
    kept in the tree.
    Knobs: ``n``, ``verifier`` (and its ``verifications``), ``tie_margin``, ``max_tied``,
    ``tie_break``.
    """

    config_model = SampleScrutinizeConfig
    description = "Self-verify every sample k times; break ties among the best pairwise."
    samples_independent: ClassVar[bool] = False

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        nodes = await sample_solutions(port, cfg.n, cfg.batch)
        answered = [n for n in nodes if n.answer is not None]
        scores = await port.score(answered, cfg.verifier)
        values = {n.id: s.value for n, s in zip(answered, scores, strict=True) if s.ok}
        picked = self.select(port)
        detail: dict[str, object] = {
            **picked.detail,
            "samples": len(nodes),
            "verified": len(values),
        }
        tied = self._tied(answered, values)
        detail["tied_answers"] = len(tied)
        if not cfg.tie_break or len(tied) < 2:
            return SearchResult(picked.answer, picked.node_id, detail)
        pairs = [(a, b) for i, a in enumerate(tied) for b in tied[i + 1 :]]
        verdicts = await port.compare(pairs, cfg.verifier)
        wins = {n.id: 0.0 for n in tied}
        for (a, b), verdict in zip(pairs, verdicts, strict=True):
            if verdict.ok and verdict.value is not None:
                wins[a.id] += verdict.value
                wins[b.id] += 1.0 - verdict.value
        winner = max(tied, key=lambda n: wins[n.id])  # max keeps the earliest of equals
        detail.update(
            {
                "comparisons": len(pairs),
                "wins": {n.id: round(wins[n.id], 6) for n in tied},
            }
        )
        return SearchResult(winner.answer, winner.id, detail)

    def select(self, tree: TreeView) -> SearchResult:
        """The candidate with the best verification score (ties: the earliest); a majority
        vote when the budget ended before any candidate was verified."""
        finished = [n for n in tree.terminals() if n.answer is not None]
        picked = argmax(finished, lambda n: tree.value(n, self.config.verifier))
        if picked.node_id is None:
            return super().select(tree)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

    def _tied(self, answered: list[Node], values: dict[str, float | None]) -> list[Node]:
        scored = [n for n in answered if values.get(n.id) is not None]
        if not scored:
            return []
        best = max(float(values[n.id] or 0.0) for n in scored)
        per_answer: dict[str, Node] = {}
        for node in scored:  # path order: the best-scored, earliest node stands for its answer
            if float(values[node.id] or 0.0) < best - self.config.tie_margin:
                continue
            current = per_answer.get(str(node.answer))
            if current is None or (values[node.id] or 0.0) > (values[current.id] or 0.0):
                per_answer[str(node.answer)] = node
        ranked = sorted(per_answer.values(), key=lambda n: -(values[n.id] or 0.0))
        return sorted(ranked[: self.config.max_tied], key=lambda n: answered.index(n))

"""Per-search score memo: each (node, scorer) pair is asked of the scorer at most once.

Concurrent requests for a node being scored wait for that score instead of sending it
again; a waiter's cancellation never cancels the scoring another part of the search owns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from branchwise.core.graph import Node, Score, SearchGraph
from branchwise.core.problem import Problem
from branchwise.core.scoring import Candidate, Scorer
from branchwise.orchestrator.budget import BudgetTracker


class ScoreMemo:
    """Scores stored on the graph, plus the futures of scores still in flight."""

    def __init__(
        self,
        *,
        problem: Problem,
        graph: SearchGraph,
        budget: BudgetTracker,
        scorers: Mapping[str, Scorer],
        candidate: Callable[[Node], Candidate],
    ) -> None:
        self.problem = problem
        self.graph = graph
        self.budget = budget
        self.scorers = scorers
        self.candidate = candidate
        self._inflight_scores: dict[tuple[str, str], asyncio.Future[Score]] = {}

    async def score(self, nodes: Sequence[Node], scorer: str) -> list[Score]:
        """Scores of ``nodes`` in order, asking the scorer only about unscored nodes."""
        if scorer not in self.scorers:
            known = ", ".join(sorted(self.scorers)) or "none configured"
            raise KeyError(f"strategy asked for scorer {scorer!r}; recipe has: {known}")
        todo: list[Node] = []
        waits: list[asyncio.Future[Score]] = []
        seen: set[str] = set()
        for node in nodes:
            key = (node.id, scorer)
            if self.graph.score(node.id, scorer) is not None or node.id in seen:
                continue
            if key in self._inflight_scores:
                waits.append(self._inflight_scores[key])
                continue
            seen.add(node.id)
            todo.append(node)
        self.budget.count_cache_hits(len(nodes) - len(todo))
        if todo:
            await self._score_batch(todo, scorer)
        if waits:
            # shield: our cancellation must not cancel another search's scoring
            await asyncio.gather(*(asyncio.shield(w) for w in waits), return_exceptions=True)
            orphans = {n.id: n for n in nodes if self.graph.score(n.id, scorer) is None}
            if orphans:  # their owner was cancelled mid-way: score them here
                await self._score_batch(list(orphans.values()), scorer)
        out: list[Score] = []
        for node in nodes:
            found = self.graph.score(node.id, scorer)
            assert found is not None
            out.append(found)
        return out

    async def _score_batch(self, todo: list[Node], scorer: str) -> None:
        self.budget.spend_scoring(len(todo))  # counted as asked, whatever the scorer does
        loop = asyncio.get_running_loop()
        futures = {n.id: loop.create_future() for n in todo}
        for node_id, fut in futures.items():
            self._inflight_scores[(node_id, scorer)] = fut
        try:
            candidates = [self.candidate(n) for n in todo]
            try:
                scores = await self.scorers[scorer].score(self.problem, candidates)
                if len(scores) != len(todo):
                    raise ValueError(f"returned {len(scores)} scores for {len(todo)} nodes")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failing scorer marks its nodes, the search goes on
                error = f"{scorer}: {type(exc).__name__}: {exc}"
                scores = [Score(value=None, error=error) for _ in todo]
            for node, score in zip(todo, scores, strict=True):
                self.graph.set_score(node.id, scorer, score)
                if not futures[node.id].done():
                    futures[node.id].set_result(score)
        finally:
            for node_id, fut in futures.items():
                self._inflight_scores.pop((node_id, scorer), None)
                if not fut.done():
                    fut.cancel()

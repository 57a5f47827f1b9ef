"""Scoring: the per-search memo, the candidates scorers see, and scoring with values.

Each (node, scorer) pair is asked of the scorer at most once: concurrent requests for a node
being scored wait for that score instead of sending it again, and a waiter's cancellation
never cancels the scoring another part of the search owns. A node's value under a scorer is
:func:`~branchwise.core.values.score_value` with the aggregation the strategy declared (or
none: the scorer's own value); nothing else in the project turns a score into a value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from branchwise.core.graph import Node, Score, SearchGraph
from branchwise.core.problem import Problem
from branchwise.core.reasoning import Reads, ReasoningFormat, read_steps
from branchwise.core.scorer_spend import charged_to
from branchwise.core.scorers import Candidate, PairwiseScorer, Scorer
from branchwise.core.values import Aggregation, score_value
from branchwise.orchestrator.ledger import Ledger
from branchwise.orchestrator.steps import ends_step, path_steps


class Scoring:
    """Scores stored on the graph, the futures of scores still in flight, and node values."""

    def __init__(
        self,
        *,
        problem: Problem,
        graph: SearchGraph,
        budget: Ledger,
        scorers: Mapping[str, Scorer[Any]],
        step_delimiter: str,
        aggregation: Aggregation | None = None,
        reasoning: ReasoningFormat | None = None,
    ) -> None:
        """``reasoning``: a reasoning model's format; each scorer then sees the part its
        config ``reads`` (thinking, answer or all; scorers without the field read all)."""
        self.problem = problem
        self.graph = graph
        self.budget = budget
        self.scorers = scorers
        self.step_delimiter = step_delimiter
        self.reasoning = reasoning
        self.aggregation = aggregation
        """Declared by the strategy: fold step values this way (None: the scorer's value)."""
        self._inflight_scores: dict[tuple[str, str], asyncio.Future[Score]] = {}

    async def values(self, nodes: Sequence[Node], scorer: str) -> list[float | None]:
        """Score ``nodes`` (one batched call) and return their values; a node without a
        value is marked failed, so it leaves every ranking instead of getting a number."""
        if not nodes:
            return []
        scores = await self.score(nodes, scorer)
        values: list[float | None] = []
        for node, score in zip(nodes, scores, strict=True):
            value = score_value(score, self.aggregation)
            if value is None:
                error = score.error or f"{scorer}: no value for this node"
                self.graph.mark(node.id, "failed", error)
            values.append(value)
        return values

    def candidate(self, node: Node, reads: Reads = "all") -> Candidate:
        """What a scorer sees of ``node``: its path's steps (of the part it ``reads``),
        answer and logprobs."""
        path = self.graph.path(node.id)
        logprobs: list[float] = []
        tops: list[tuple[float, ...]] = []
        for n in path[1:]:
            logprobs.extend(n.token_logprobs)
            tops.extend(n.top_logprobs)
        steps = path_steps(((n.text, ends_step(n)) for n in path[1:]), self.step_delimiter)
        if self.reasoning is not None:
            steps = read_steps(steps, self.reasoning, reads)
        return Candidate(
            node_id=node.id,
            prompt=path[0].text,
            steps=steps,
            answer=node.answer,
            terminal=node.terminal,
            token_logprobs=tuple(logprobs),
            top_logprobs=tuple(tops),
        )

    async def compare(self, pairs: Sequence[tuple[Node, Node]], scorer: str) -> list[Score]:
        """A pairwise scorer's verdict on each pair (no memo: ask each pair once).

        Each pair counts as one scorer call. A failing scorer yields error scores for the
        whole batch, never plausible values.
        """
        found = self.scorers.get(scorer)
        if found is None:
            known = ", ".join(sorted(self.scorers)) or "none configured"
            raise KeyError(f"strategy asked for scorer {scorer!r}; recipe has: {known}")
        if not isinstance(found, PairwiseScorer):
            raise TypeError(
                f"scorer {scorer!r} ({found.config.kind}) cannot compare pairs; "
                "it must be a PairwiseScorer"
            )
        if not pairs:
            return []
        self.budget.spend_scoring(len(pairs))
        reads = _reads(found)
        views = [(self.candidate(a, reads), self.candidate(b, reads)) for a, b in pairs]
        try:
            with charged_to(self.budget.count_scorer_tokens):
                scores = await found.compare(self.problem, views)
            if len(scores) != len(pairs):
                raise ValueError(f"returned {len(scores)} scores for {len(pairs)} pairs")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded as errors; the strategy decides what to do
            error = f"{scorer}: {type(exc).__name__}: {exc}"
            scores = [Score(value=None, error=error) for _ in pairs]
        return scores

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
            reads = _reads(self.scorers[scorer])
            candidates = [self.candidate(n, reads) for n in todo]
            try:
                with charged_to(self.budget.count_scorer_tokens):
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


def _reads(scorer: Scorer[Any]) -> Reads:
    """The part of a reasoning path ``scorer`` reads (its config's ``reads``, else all)."""
    reads = getattr(scorer.config, "reads", "all")
    if reads == "thinking":
        return "thinking"
    return "answer" if reads == "answer" else "all"

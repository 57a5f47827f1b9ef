"""One request's search, run as a task the server can watch and cancel.

The search runs through :meth:`Orchestrator.solve` on the model's shared engine. While it
runs, :meth:`SearchRun.updates` looks at the strategy's best answer so far
(``strategy.anytime(ctx)``, read-only) and yields it each time it changes; cancelling the run
cancels the search, which aborts its engine requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from branchwise.core.problem import Problem
from branchwise.orchestrator.context import SearchContext
from branchwise.orchestrator.prompting import RenderedPrompt
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.strategies.base import Strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestSoFar:
    """The strategy's current pick: its answer, the node it came from and that path's text."""

    answer: str | None
    node_id: str
    text: str
    generated_tokens: int
    nodes: int


class SearchView:
    """Holds a running search's context and strategy (the runner's ``watch`` hook)."""

    def __init__(self) -> None:
        self.ctx: SearchContext | None = None
        self.strategy: Strategy[Any] | None = None

    def __call__(self, ctx: SearchContext, strategy: Strategy[Any]) -> None:
        self.ctx, self.strategy = ctx, strategy

    def best(self) -> BestSoFar | None:
        """The anytime answer now; None before the first finished path."""
        ctx, strategy = self.ctx, self.strategy
        if ctx is None or strategy is None:
            return None
        try:
            pick = strategy.anytime(ctx)
        except Exception as exc:  # a strategy whose anytime needs state not built yet
            log.debug("anytime not available yet: %s", exc)
            return None
        if pick.node_id is None:
            return None
        usage = ctx.budget.usage
        return BestSoFar(
            answer=pick.answer,
            node_id=pick.node_id,
            text=ctx.graph.solution_text(pick.node_id),
            generated_tokens=usage.generated_tokens,
            nodes=usage.nodes,
        )


class SearchRun:
    """A search started as a task; cancel it with :meth:`cancel` (idempotent)."""

    def __init__(
        self, orchestrator: Orchestrator, problem: Problem, prompt: RenderedPrompt
    ) -> None:
        self.view = SearchView()
        self.task: asyncio.Task[ProblemResult] = asyncio.create_task(
            orchestrator.solve(problem, prompt=prompt, watch=self.view),
            name=f"search:{orchestrator.run_id}",
        )

    async def updates(self, interval: float) -> AsyncIterator[BestSoFar]:
        """The best answer so far each time it changes, until the search ends."""
        last: tuple[str | None, str] | None = None
        while not self.task.done():
            await asyncio.wait({self.task}, timeout=interval)
            if self.task.done():
                return
            best = self.view.best()
            if best is not None and (best.answer, best.node_id) != last:
                last = (best.answer, best.node_id)
                yield best

    async def result(self) -> ProblemResult:
        return await asyncio.shield(self.task)

    async def cancel(self) -> bool:
        """Stop the search if it is still running; True if it was."""
        if self.task.done():
            return False
        self.task.cancel()
        # gather: the search's CancelledError becomes a value; one aimed at us still raises
        await asyncio.gather(self.task, return_exceptions=True)
        return True

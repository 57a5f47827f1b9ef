"""Whole-solution sampling shared by best-of-N and self-consistency."""

from __future__ import annotations

import asyncio

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node
from branchwise.core.port import SearchPort


async def sample_solutions(
    ctx: SearchPort, n: int, batch: int | None, *, logprobs: int | None = None
) -> list[Node]:
    """Sample ``n`` solutions from the root in concurrent requests of ``batch`` samples.

    Requests that the budget cannot pay for are skipped; if none could start, the budget
    error propagates so the runner falls back to the anytime answer.
    """
    size = batch or n
    sizes = [min(size, n - start) for start in range(0, n, size)]
    results = await asyncio.gather(
        *(ctx.sample(k, logprobs=logprobs) for k in sizes), return_exceptions=True
    )
    nodes: list[Node] = []
    budget_error: BudgetExhausted | None = None
    for result in results:
        if isinstance(result, BudgetExhausted):
            budget_error = result
        elif isinstance(result, BaseException):
            raise result
        else:
            nodes.extend(result)
    if not nodes and budget_error is not None:
        raise budget_error
    return nodes

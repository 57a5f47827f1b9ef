"""Whole-solution sampling shared by best-of-N and self-consistency."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
    return gathered(results)


def gathered(outcomes: Sequence[list[Node] | BaseException]) -> list[Node]:
    """The nodes of sample groups run together (``gather(..., return_exceptions=True)``): a
    group that ran out of budget is skipped while another wrote something; any other error,
    or every group out of budget, is raised."""
    budget_error = budget_error_of(outcomes)
    nodes = [node for outcome in outcomes if not isinstance(outcome, BaseException)
             for node in outcome]  # fmt: skip
    if not nodes and budget_error is not None:
        raise budget_error
    return nodes


def budget_error_of(outcomes: Sequence[object]) -> BudgetExhausted | None:
    """Of tasks run together (``gather(..., return_exceptions=True)``): raise the first error
    that is not running out of budget; else the budget error, if any, for the caller to raise
    only when nothing was written."""
    budget_error: BudgetExhausted | None = None
    for outcome in outcomes:
        if isinstance(outcome, BudgetExhausted):
            budget_error = outcome
        elif isinstance(outcome, BaseException):
            raise outcome
    return budget_error

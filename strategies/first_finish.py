"""First-finish search: start N samples at once, keep the first to finish, abort the rest."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node
from branchwise.core.port import SampleStream, SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.selection import majority_vote


class FirstFinishConfig(StrategyConfig):
    name: Literal["first_finish"] = "first_finish"
    n: int = Field(8, ge=1, description="Samples started at once (one request each, n=1).")
    require_answer: bool = Field(
        True,
        description="Return the first finished sample that has an answer (true) or the first "
        "to finish at all (false).",
    )


class FirstFinish(Strategy[FirstFinishConfig]):
    """First-finish search (after "First Finish Search", Agarwal et al. 2025).

    Shorter reasoning traces are more often right, so ``n`` samples race and the first to
    finish (with ``require_answer``, the first finished one with an answer) wins; the others
    are aborted at once and stay in the graph with their partial tokens, status "aborted".
    Cost: the winner's length times ``n`` at most, usually less; no scorer calls.
    If nobody qualifies, the finished samples vote. Completion order decides here by design:
    the result is deterministic only given deterministic timing (on the scripted engine
    latency is tokens x seconds_per_token, so it is; samples finishing in the same event-loop
    turn are ranked by node id).
    """

    config_model = FirstFinishConfig
    description = "Race N samples; return the first to finish and abort the others."

    async def search(self, ctx: SearchPort) -> SearchResult:
        streams = [ctx.stream(ctx.root, one_step=False) for _ in range(self.config.n)]
        tasks = {
            asyncio.create_task(_run(stream), name=f"first_finish:{stream.child_id}"): stream
            for stream in streams
        }
        order = {task: i for i, task in enumerate(tasks)}
        winner: Node | None = None
        pending = set(tasks)
        budget_error: BudgetExhausted | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=order.__getitem__):
                    error = task.exception()
                    if isinstance(error, BudgetExhausted):
                        budget_error = error
                        continue
                    if error is not None:
                        raise error
                    node = task.result()
                    if winner is None and self._qualifies(node):
                        winner = node
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        recorded = [s.node for s in streams if s.node is not None]
        if not recorded and budget_error is not None:
            raise budget_error
        aborted = [n.id for n in recorded if n.finish_reason == "abort"]
        detail: dict[str, object] = {"started": len(recorded), "aborted": aborted}
        if winner is not None:
            return SearchResult(winner.answer, winner.id, {"winner": winner.id, **detail})
        picked = majority_vote([n for n in recorded if n.answer is not None])
        return SearchResult(picked.answer, picked.node_id, {**detail, **picked.detail})

    def _qualifies(self, node: Node) -> bool:
        finished = node.finish_reason in ("stop", "length")
        return finished and (node.answer is not None or not self.config.require_answer)


async def _run(stream: SampleStream) -> Node:
    """Drain one stream; its node is recorded (finished or aborted) when the block exits."""
    async with stream:
        async for _ in stream:
            pass
    assert stream.node is not None
    return stream.node

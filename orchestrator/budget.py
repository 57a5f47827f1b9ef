"""Budgets (what a search may spend) and usage (what it did spend).

Generated tokens are reserved when a request is issued (``n * max_tokens``) and the unused
part is returned when it completes, so concurrent expansions can never overshoot the budget.

Near the end of a budget, whether a request is cut short (``max_tokens`` clamped) or refused
would depend on which requests in flight had already returned their unused reservation, that
is, on timing. So such a request waits until no expansion is in flight, and waiting requests
are decided one at a time in the order of their keys (node ids), never in arrival order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import BudgetExhausted


class Budget(BaseModel):
    """Limits for one problem's search; None means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_generated_tokens: int | None = Field(None, ge=1, description="Sampled tokens.")
    max_prompt_tokens: int | None = Field(None, ge=1, description="Prompt tokens sent.")
    max_engine_calls: int | None = Field(None, ge=1, description="Generation requests.")
    max_scorer_calls: int | None = Field(None, ge=1, description="Nodes sent to scorers.")
    max_seconds: float | None = Field(None, gt=0, description="Wall-clock seconds.")
    max_nodes: int | None = Field(None, ge=1, description="Nodes in the search graph.")


@dataclass
class Usage:
    """Everything one search spent; every field is traceable to graph nodes."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0
    scorer_calls: int = 0
    scorer_cache_hits: int = 0
    nodes: int = 0
    aborted_requests: int = 0
    seconds: float = 0.0

    def add(self, other: Usage) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class BudgetTracker:
    """Checks and records spending against a :class:`Budget` for one search."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.usage = Usage()
        self._reserved_tokens = 0
        self._reserved_prompt = 0
        self._reserved_nodes = 0
        self._started = time.monotonic()
        self._expanding = 0  # waitable requests in flight: they finish without our help
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return self.budget.max_seconds - self.elapsed

    def generated_tokens_left(self) -> int | None:
        if self.budget.max_generated_tokens is None:
            return None
        return (
            self.budget.max_generated_tokens - self.usage.generated_tokens - self._reserved_tokens
        )

    @property
    def exhausted(self) -> bool:
        """True when no further generation request could be issued."""
        try:
            self.check_request(n=1, max_tokens=1, new_nodes=1)
        except BudgetExhausted:
            return True
        return False

    def check_request(
        self, *, n: int, max_tokens: int, new_nodes: int, prompt_tokens: int = 0
    ) -> int:
        """Raise if a request cannot start; return the max_tokens it may use per sample."""
        b, u = self.budget, self.usage
        if b.max_engine_calls is not None and u.engine_calls >= b.max_engine_calls:
            raise BudgetExhausted("engine call budget spent")
        if b.max_nodes is not None and u.nodes + self._reserved_nodes + new_nodes > b.max_nodes:
            raise BudgetExhausted("node budget spent")
        left_seconds = self.seconds_left()
        if left_seconds is not None and left_seconds <= 0:
            raise BudgetExhausted("time budget spent")
        if (
            b.max_prompt_tokens is not None
            and u.prompt_tokens + self._reserved_prompt + max(prompt_tokens, 1)
            > b.max_prompt_tokens
        ):
            raise BudgetExhausted("prompt token budget spent")
        left_tokens = self.generated_tokens_left()
        if left_tokens is None:
            return max_tokens
        per_sample = min(max_tokens, left_tokens // n)
        if per_sample < 1:
            raise BudgetExhausted("generated token budget spent")
        return per_sample

    async def admit(
        self,
        *,
        n: int,
        max_tokens: int,
        new_nodes: int,
        prompt_tokens: int,
        key: str,
        waitable: bool = True,
    ) -> int:
        """Reserve a request's budget; return the max_tokens each of its ``n`` samples may use.

        A request that fits in full is admitted at once (settling could only free budget). One
        that would be cut short or refused waits while expansions are in flight, so the cut is
        the same whichever of them finishes first. ``waitable``: the request finishes on its own
        (a plain generation), so others may wait for it; a stream, which finishes only as its
        consumer reads it, must pass False.
        """
        while True:
            try:
                per_sample = self.check_request(
                    n=n, max_tokens=max_tokens, new_nodes=new_nodes, prompt_tokens=prompt_tokens
                )
            except BudgetExhausted:
                if self._expanding == 0:
                    self._wake_next()
                    raise
            else:
                if per_sample >= max_tokens or self._expanding == 0:
                    self.reserve(
                        per_sample * n, nodes=new_nodes, prompt=prompt_tokens, waitable=waitable
                    )
                    self._wake_next()
                    return per_sample
            await self._wait_turn(key)

    async def _wait_turn(self, key: str) -> None:
        """Wait until nothing waitable is in flight and no smaller key waits before us."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (key, next(self._arrivals), turn))
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._wake_next()  # our turn came but we will not use it: pass it on
            else:
                self._waiters = [w for w in self._waiters if w[2] is not turn]
                heapq.heapify(self._waiters)
            raise

    def _wake_next(self) -> None:
        if self._expanding == 0 and self._waiters:
            heapq.heappop(self._waiters)[2].set_result(None)

    def check_nodes(self, count: int) -> None:
        """Raise if ``count`` more nodes would pass the node budget (nodes without tokens)."""
        b, u = self.budget, self.usage
        if b.max_nodes is not None and u.nodes + self._reserved_nodes + count > b.max_nodes:
            raise BudgetExhausted("node budget spent")

    def reserve(self, tokens: int, nodes: int = 0, prompt: int = 0, waitable: bool = False) -> None:
        """Hold tokens (and nodes) for a request in flight, so concurrent ones cannot overshoot.

        ``waitable``: see :meth:`admit`; settle it with the same flag.
        """
        self._expanding += waitable
        self._reserved_tokens += tokens
        self._reserved_nodes += nodes
        self._reserved_prompt += prompt
        self.usage.engine_calls += 1

    def settle(
        self,
        reserved: int,
        generated: int,
        prompt: int,
        cached: int,
        nodes: int,
        *,
        reserved_nodes: int = 0,
        reserved_prompt: int = 0,
        waitable: bool = False,
    ) -> None:
        """Replace a reservation with what the request actually used."""
        self._reserved_tokens -= reserved
        self._reserved_nodes -= reserved_nodes
        self._reserved_prompt -= reserved_prompt
        self.usage.generated_tokens += generated
        self.usage.prompt_tokens += prompt
        self.usage.cached_prompt_tokens += cached
        self.usage.nodes += nodes
        self._expanding -= waitable
        self._wake_next()

    def check_scoring(self, count: int) -> None:
        b = self.budget
        if b.max_scorer_calls is not None and self.usage.scorer_calls + count > b.max_scorer_calls:
            raise BudgetExhausted("scorer call budget spent")

    def finish(self) -> Usage:
        self.usage.seconds = self.elapsed
        return self.usage

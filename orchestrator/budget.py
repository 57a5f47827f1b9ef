"""Budgets (what a search may spend) and usage (what it did spend).

Generated tokens are reserved when a request is issued (``n * max_tokens``) and the unused
part is returned when it completes, so concurrent expansions can never overshoot the budget.

Near the end of a budget, whether a request is cut short (``max_tokens`` clamped) or refused
would depend on which requests in flight had already returned their unused reservation, that
is, on timing. So such a request waits until no plain generation is in flight, and from then
on waiting requests are decided one at a time in node order, not in arrival order. This makes
the cut independent of timing for strategies that issue their requests in waves; strategies
that run independent loops at once (DVTS subtrees, parallel MCTS simulations, streams) can
still see different cuts at a binding budget, since which requests are waiting at a given
moment is itself a matter of timing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

from core.errors import BudgetExhausted
from core.graph import path_key


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
        self._waiters: list[tuple[tuple[int, ...], int, asyncio.Future[None]]] = []
        self._turn_handed = False  # a waiter was woken and has not decided yet
        self._arrivals = itertools.count()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return self.budget.max_seconds - self.elapsed

    def generated_tokens_left(self, count_reserved: bool = True) -> int | None:
        """Tokens still to sample; ``count_reserved=False``: as if nothing were in flight."""
        if self.budget.max_generated_tokens is None:
            return None
        held = self._reserved_tokens if count_reserved else 0
        return self.budget.max_generated_tokens - self.usage.generated_tokens - held

    @property
    def exhausted(self) -> bool:
        """True when no further generation request could be issued."""
        try:
            self.check_request(n=1, max_tokens=1, new_nodes=1)
        except BudgetExhausted:
            return True
        return False

    def check_request(
        self,
        *,
        n: int,
        max_tokens: int,
        new_nodes: int,
        prompt_tokens: int = 0,
        count_reserved: bool = True,
    ) -> int:
        """Raise if a request cannot start; return the max_tokens it may use per sample.

        ``count_reserved=False`` answers as if every request in flight had returned its
        unused reservation: what waiting for them could at best achieve.
        """
        b, u = self.budget, self.usage
        held = count_reserved
        if b.max_engine_calls is not None and u.engine_calls >= b.max_engine_calls:
            raise BudgetExhausted("engine call budget spent")
        if (
            b.max_nodes is not None
            and u.nodes + self._reserved_nodes * held + new_nodes > b.max_nodes
        ):
            raise BudgetExhausted("node budget spent")
        left_seconds = self.seconds_left()
        if left_seconds is not None and left_seconds <= 0:
            raise BudgetExhausted("time budget spent")
        if (
            b.max_prompt_tokens is not None
            and u.prompt_tokens + self._reserved_prompt * held + max(prompt_tokens, 1)
            > b.max_prompt_tokens
        ):
            raise BudgetExhausted("prompt token budget spent")
        left_tokens = self.generated_tokens_left(count_reserved)
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

        While nobody waits, a request that fits in full is admitted at once. One that would be
        cut short or refused only because of reservations still in flight waits until no
        waitable request is in flight; from then on requests are decided one at a time, in
        node order of ``key``, never in the order their predecessors happened to finish.
        ``waitable``: the request finishes on its own (a plain generation), so others may wait
        for it; a stream, which finishes only as its consumer reads it, must pass False.
        """

        def check(count_reserved: bool = True) -> int:
            return self.check_request(
                n=n,
                max_tokens=max_tokens,
                new_nodes=new_nodes,
                prompt_tokens=prompt_tokens,
                count_reserved=count_reserved,
            )

        woken = False
        while True:
            if woken or not (self._waiters or self._turn_handed):
                try:
                    per_sample = check()
                except BudgetExhausted:
                    if self._expanding == 0 or not _curable(check):
                        self._decided(woken)
                        raise
                else:
                    cut = per_sample < max_tokens
                    if not cut or self._expanding == 0 or not _curable(check):
                        self.reserve(
                            per_sample * n, nodes=new_nodes, prompt=prompt_tokens, waitable=waitable
                        )
                        self._decided(woken)
                        return per_sample
            if woken:
                self._turn_handed = False
            await self._wait_turn(key)
            woken = True

    async def _wait_turn(self, key: str) -> None:
        """Wait until nothing waitable is in flight and no earlier node waits before us."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (path_key(key), next(self._arrivals), turn))
        self._wake_next()
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._turn_handed = False
                self._wake_next()  # our turn came but we will not use it: pass it on
            else:
                self._waiters = [w for w in self._waiters if w[2] is not turn]
                heapq.heapify(self._waiters)
            raise

    def _decided(self, woken: bool) -> None:
        """A request was admitted or refused: the next waiter may go once nothing is in flight."""
        if woken:
            self._turn_handed = False
        self._wake_next()

    def _wake_next(self) -> None:
        while self._expanding == 0 and self._waiters and not self._turn_handed:
            turn = heapq.heappop(self._waiters)[2]
            if not turn.done():  # a cancelled waiter may still be queued: skip it
                turn.set_result(None)
                self._turn_handed = True

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


def _curable(check: Callable[[bool], int]) -> bool:
    """True if the requests in flight returning their unused reservations could help."""
    try:
        best = check(False)
    except BudgetExhausted:
        return False
    try:
        return best > check(True)
    except BudgetExhausted:
        return True

"""Admission near the end of a budget: cut or refuse a request independently of timing.

Near the end of a budget, whether a request is cut short (``max_tokens`` clamped) or refused
would depend on which requests in flight had already returned their unused reservation, that
is, on timing. So such a request waits until no plain generation is in flight, and from then
on waiting requests are decided one at a time in node order, not in arrival order. This makes
the cut independent of timing for strategies that issue their requests in waves, and for
AB-MCTS's parallel decisions at a tight budget (a naive check-and-reserve cuts differently
at different latencies there: ``tests/unit/test_step_determinism.py``). Strategies that run
independent loops at once (DVTS subtrees, parallel MCTS simulations, streams) can still see
different cuts at a binding budget, since which requests are waiting at a given moment is
itself a matter of timing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import path_key

if TYPE_CHECKING:
    from branchwise.orchestrator.budget import BudgetTracker, Reservation


class AdmissionQueue:
    """One search's queue of requests waiting to be admitted, in node order."""

    def __init__(self, tracker: BudgetTracker) -> None:
        self._tracker = tracker
        self._expanding = 0  # waitable requests in flight: they finish without our help
        self._waiters: list[tuple[tuple[int, ...], int, asyncio.Future[None]]] = []
        self._turn_handed = False  # a waiter was woken and has not decided yet
        self._arrivals = itertools.count()

    def started(self) -> None:
        """A waitable request was admitted."""
        self._expanding += 1

    def finished(self) -> None:
        """A waitable request settled: the next waiter may go once nothing is in flight."""
        self._expanding -= 1
        self._wake_next()

    def wake(self) -> None:
        """Budget was given back: a waiter may go, if nothing waitable is in flight."""
        self._wake_next()

    async def admit(
        self,
        *,
        n: int,
        max_tokens: int,
        new_nodes: int,
        prompt_tokens: int,
        key: str,
        waitable: bool = True,
    ) -> Reservation:
        """Reserve a request's budget; its ``per_sample`` is what each of its ``n`` samples
        may use.

        While nobody waits, a request that fits in full is admitted at once. One that would be
        cut short or refused only because of reservations still in flight waits until no
        waitable request is in flight; from then on requests are decided one at a time, in
        node order of ``key``, never in the order their predecessors happened to finish.
        ``waitable``: the request finishes on its own (a plain generation), so others may wait
        for it; a stream, which finishes only as its consumer reads it, must pass False.
        """
        tracker = self._tracker

        def check(count_reserved: bool = True) -> int:
            return tracker.check_request(
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
                        held = tracker.hold(
                            per_sample=per_sample,
                            tokens=per_sample * n,
                            nodes=new_nodes,
                            prompt=prompt_tokens,
                            waitable=waitable,
                        )
                        self._decided(woken)
                        return held
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

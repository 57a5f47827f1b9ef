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

from branchwise.core.graph import path_key


class AdmissionOrder:
    """Whose turn it is among one search's waiting requests: node order, never arrival order.

    It decides nothing about budgets (the ledger does); it counts the waitable requests in
    flight and hands the turn to the earliest waiting node once none is left in flight.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        """Waitable requests admitted and not yet settled: they finish without our help."""
        self._waiters: list[tuple[tuple[int, ...], int, asyncio.Future[None]]] = []
        self._turn_handed = False  # a waiter was woken and has not decided yet
        self._arrivals = itertools.count()

    @property
    def queued(self) -> bool:
        """True while a request waits or holds the turn (a newcomer must queue too)."""
        return bool(self._waiters) or self._turn_handed

    def started(self) -> None:
        """A waitable request was admitted."""
        self.in_flight += 1

    def finished(self) -> None:
        """A waitable request settled: the next waiter may go once nothing is in flight."""
        self.in_flight -= 1
        self._wake_next()

    def wake(self) -> None:
        """Budget was given back: a waiter may go, if nothing waitable is in flight."""
        self._wake_next()

    def decided(self, woken: bool) -> None:
        """A request was admitted or refused: the next waiter may go once nothing is in flight."""
        if woken:
            self._turn_handed = False
        self._wake_next()

    def turn_unused(self) -> None:
        """The woken request must wait again (requests in flight may still help it)."""
        self._turn_handed = False

    async def wait_turn(self, key: str) -> None:
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

    def _wake_next(self) -> None:
        while self.in_flight == 0 and self._waiters and not self._turn_handed:
            turn = heapq.heappop(self._waiters)[2]
            if not turn.done():  # a cancelled waiter may still be queued: skip it
                turn.set_result(None)
                self._turn_handed = True

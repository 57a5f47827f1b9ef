"""Lending unspent budget between the problems of one run: deterministic, and nobody waits.

Some strategies leave part of a problem's budget unspent (entropy branching on a prompt the
model is sure about) and would like more on others. Each problem of a run gets a seat in the
run's :class:`LendingPool`, in run order, and exchanges exactly once: it hands in what it left
and asks for what it wants.

The rule: the pool is a pass over the problems in run order. A problem that asks draws on the
net lending of the problems before it, once every one of them has finished its search, so
what it gets depends neither on later problems nor on timing (as long as what each problem
lends does not: a binding token or time budget can make it). A problem never waits to start
or to search: the runner starts problems in order, and a problem that asks has finished its
own search when it does; until the pass reaches it, it gives its concurrency slot back to the
run (``slots``), so a slow earlier problem never holds up the problems after it, and it takes
a slot again to spend what it got. Only the borrowed part of its work waits for the pass.
This cannot deadlock: the first unfinished problem of the run never waits for the pass.

Seats follow the order of the whole problem list, and a resumed run seats the problems
finished earlier with the exchange they made then (stored with their results), so resuming
changes no later problem's share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class LendingPool:
    """The ledger of one run: per seat, units lent minus units borrowed.

    ``slots``: the run's concurrency slots, if the runner bounds them; a seat that waits for
    the pass releases the slot it holds (:attr:`PoolSeat.holds_slot`) and takes one again
    before it goes on.
    """

    def __init__(self, slots: asyncio.Semaphore | None = None) -> None:
        self.slots = slots
        self._net: dict[int, int] = {}
        self._exchanged_through = 0  # seats 0 .. _exchanged_through-1 have all exchanged
        self._waiters: dict[int, asyncio.Future[None]] = {}

    def seat(self, index: int) -> PoolSeat:
        return PoolSeat(self, index)

    def _record(self, index: int, net: int) -> None:
        if index in self._net:
            raise RuntimeError(f"seat {index} exchanged twice")
        self._net[index] = net
        while self._exchanged_through in self._net:
            self._exchanged_through += 1
        for waiting in [i for i in self._waiters if i <= self._exchanged_through]:
            future = self._waiters.pop(waiting)
            if not future.done():
                future.set_result(None)

    async def _available_to(self, seat: PoolSeat) -> int:
        """Net units lent by seats before ``seat``, once they have all exchanged."""
        index = seat.index
        if self._exchanged_through < index:
            future = asyncio.get_running_loop().create_future()
            self._waiters[index] = future
            await seat.without_slot(future)
        return sum(self._net[i] for i in range(index))


class PoolSeat:
    """One problem's place in the pool; exchange once, or close to lend and ask nothing."""

    def __init__(self, pool: LendingPool, index: int) -> None:
        self._pool = pool
        self.index = index
        self.lent = 0
        self.borrowed = 0
        self.done = False
        self.holds_slot = False
        """True while the problem holds one of the run's concurrency slots."""
        self._exchanging = False

    async def exchange(self, *, lend: int, want: int) -> int:
        """Hand in ``lend`` unused units and ask for ``want`` more; return the units borrowed.

        Asking waits for the pass to reach this seat (every earlier problem finished), without
        the seat's concurrency slot; lending alone never waits.
        """
        if self.done or self._exchanging:
            raise RuntimeError(f"seat {self.index} exchanged twice")
        self._exchanging = True
        lend, want = max(lend, 0), max(want, 0)
        borrowed = 0
        if want:
            available = await self._pool._available_to(self)
            borrowed = min(want, max(available, 0))
        self.restore_exchange({"lent": lend, "borrowed": borrowed})
        return borrowed

    async def without_slot(self, waiting: asyncio.Future[None]) -> None:
        """Await ``waiting`` with the run's slot given back; take a slot again after."""
        slots = self._pool.slots
        if slots is None or not self.holds_slot:
            await waiting
            return
        self.release_slot()
        await waiting
        await slots.acquire()
        self.holds_slot = True

    def release_slot(self) -> None:
        """Give the seat's concurrency slot back to the run (if it holds one)."""
        if self.holds_slot and self._pool.slots is not None:
            self.holds_slot = False
            self._pool.slots.release()

    def ledger(self) -> dict[str, int]:
        """What this seat lent and borrowed, as stored with the problem's result."""
        return {"lent": self.lent, "borrowed": self.borrowed}

    def restore_exchange(self, ledger: Mapping[str, int]) -> None:
        """Record an exchange (one made by an earlier, resumed run: its stored :meth:`ledger`)."""
        if self.done:
            raise RuntimeError(f"seat {self.index} exchanged twice")
        self.done = True
        self.lent, self.borrowed = ledger.get("lent", 0), ledger.get("borrowed", 0)
        self._pool._record(self.index, self.lent - self.borrowed)

    def close(self) -> None:
        """Settle a seat that never exchanged (a failed problem): lends and takes nothing."""
        if not self.done:
            self.done = True
            self._pool._record(self.index, 0)

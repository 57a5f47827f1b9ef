"""Lending unspent budget between the problems of one run, deterministically.

Some strategies leave part of a problem's budget unspent (entropy branching on a prompt the
model is sure about) and would like more on others. Each problem of a run gets a seat in the
run's :class:`LendingPool`, in run order, and exchanges exactly once: it hands in what it left
and asks for what it wants. A problem that asks waits until every earlier problem has
exchanged, and draws only on their net lending, so what it gets depends neither on later
problems nor on timing (as long as what each problem lends does not: a binding token or time
budget can make it). Waiting only on earlier problems cannot deadlock: the runner starts
problems in order, so every earlier problem is running or done. Seats follow the order of the
whole problem list, and a resumed run seats the problems finished earlier with the exchange
they made then (stored with their results), so resuming changes no later problem's share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class LendingPool:
    """The ledger of one run: per seat, units lent minus units borrowed."""

    def __init__(self) -> None:
        self._net: dict[int, int] = {}
        self._settled = 0  # seats 0 .. _settled-1 have all exchanged
        self._waiters: dict[int, asyncio.Future[None]] = {}

    def seat(self, index: int) -> PoolSeat:
        return PoolSeat(self, index)

    def _record(self, index: int, net: int) -> None:
        if index in self._net:
            raise RuntimeError(f"seat {index} exchanged twice")
        self._net[index] = net
        while self._settled in self._net:
            self._settled += 1
        for waiting in [i for i in self._waiters if i <= self._settled]:
            future = self._waiters.pop(waiting)
            if not future.done():
                future.set_result(None)

    async def _available_to(self, index: int) -> int:
        """Net units lent by seats before ``index``, once they have all exchanged."""
        if self._settled < index:
            future = asyncio.get_running_loop().create_future()
            self._waiters[index] = future
            await future
        return sum(self._net[i] for i in range(index))


class PoolSeat:
    """One problem's place in the pool; exchange once, or close to lend and ask nothing."""

    def __init__(self, pool: LendingPool, index: int) -> None:
        self._pool = pool
        self.index = index
        self.lent = 0
        self.borrowed = 0
        self.done = False
        self._exchanging = False

    async def exchange(self, *, lend: int, want: int) -> int:
        """Hand in ``lend`` unused units and ask for ``want`` more; return the units borrowed.

        Asking waits until every earlier problem has exchanged; lending alone never waits.
        """
        if self.done or self._exchanging:
            raise RuntimeError(f"seat {self.index} exchanged twice")
        self._exchanging = True
        lend, want = max(lend, 0), max(want, 0)
        borrowed = 0
        if want:
            available = await self._pool._available_to(self.index)
            borrowed = min(want, max(available, 0))
        self.settle_as({"lent": lend, "borrowed": borrowed})
        return borrowed

    def ledger(self) -> dict[str, int]:
        """What this seat lent and borrowed, as stored with the problem's result."""
        return {"lent": self.lent, "borrowed": self.borrowed}

    def settle_as(self, ledger: Mapping[str, int]) -> None:
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

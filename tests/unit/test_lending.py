"""The run's lending pool: a borrower draws only on earlier seats, and waits for them slotless."""

from __future__ import annotations

import asyncio

import pytest

from branchwise.orchestrator.lending import LendingPool


@pytest.mark.parametrize("finish_order", [(0, 1), (1, 0)])
def test_a_borrower_gets_the_same_whichever_earlier_seat_finishes_first(
    finish_order: tuple[int, int],
) -> None:
    async def go() -> tuple[int, int]:
        pool = LendingPool()
        seats = [pool.seat(i) for i in range(4)]
        borrower = asyncio.create_task(seats[2].exchange(lend=0, want=5))
        later = asyncio.create_task(seats[3].exchange(lend=0, want=5))
        await asyncio.sleep(0)
        assert not borrower.done()  # seats 0 and 1 have not exchanged yet
        lent = {0: 3, 1: 1}
        for index in finish_order:
            await seats[index].exchange(lend=lent[index], want=0)
            await asyncio.sleep(0)
        return await borrower, await later

    # seat 2 takes all 4 lent before it; seat 3 finds nothing left
    assert asyncio.run(go()) == (4, 0)


def test_a_closed_seat_lends_nothing_and_releases_waiters() -> None:
    async def go() -> int:
        pool = LendingPool()
        first, failed, borrower = (pool.seat(i) for i in range(3))
        waiting = asyncio.create_task(borrower.exchange(lend=0, want=2))
        await first.exchange(lend=1, want=0)
        failed.close()  # a problem that failed never exchanges
        failed.close()  # closing twice is harmless
        return await waiting

    assert asyncio.run(go()) == 1


def test_lending_alone_never_waits_and_a_seat_exchanges_once() -> None:
    async def go() -> None:
        pool = LendingPool()
        seat = pool.seat(5)
        assert await seat.exchange(lend=2, want=0) == 0  # seats 0-4 have not exchanged
        with pytest.raises(RuntimeError, match="twice"):
            await seat.exchange(lend=1, want=0)

    asyncio.run(go())


def test_a_waiting_borrower_gives_its_slot_back_and_takes_one_again() -> None:
    async def go() -> None:
        slots = asyncio.Semaphore(1)
        pool = LendingPool(slots)
        first, borrower = pool.seat(0), pool.seat(1)
        await slots.acquire()
        borrower.holds_slot = True
        waiting = asyncio.create_task(borrower.exchange(lend=0, want=3))
        await asyncio.sleep(0)
        assert not borrower.holds_slot and not slots.locked()  # free for the next problem
        await first.exchange(lend=2, want=0)
        assert await waiting == 2
        assert borrower.holds_slot and slots.locked()  # it spends what it got in a slot
        borrower.release_slot()
        assert not slots.locked()

    asyncio.run(go())

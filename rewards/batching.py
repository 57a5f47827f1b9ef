"""A shared micro-batching queue in front of a model.

Many searches score a few nodes each, at about the same time. Sending each call to the model
on its own wastes the batch dimension; the :class:`MicroBatcher` collects requests from all
concurrent callers for at most ``max_wait_ms`` (or until ``max_batch`` are waiting) and sends
them to the model as one batch. Callers await only their own result. If the model call fails,
every request in that batch gets the exception; the caller decides what it means for its node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class BatchStats:
    """What the queue did: batches sent, items sent, and the largest batch."""

    batches: int = 0
    items: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[In, Out]):
    """Collects items from concurrent callers and hands them to ``process`` in batches.

    ``process`` receives a list of items and must return one result per item, in order. It
    runs at most ``max_inflight`` batches at once, so a slow model builds larger batches
    instead of an unbounded pile of small ones.
    """

    def __init__(
        self,
        process: Callable[[list[In]], Awaitable[Sequence[Out]]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_inflight: int = 2,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_inflight < 1:
            raise ValueError(
                f"MicroBatcher needs max_batch >= 1, max_wait_ms >= 0, max_inflight >= 1; "
                f"got {max_batch}, {max_wait_ms}, {max_inflight}"
            )
        self.process = process
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        """The result for one item, computed in whatever batch it lands in."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return await future

    async def submit_many(self, items: Sequence[In]) -> list[Out | BaseException]:
        """Results (or the exception of their batch) for several items, in order."""
        results = await asyncio.gather(*(self.submit(i) for i in items), return_exceptions=True)
        return list(results)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if live:
                task = asyncio.ensure_future(self._run(live))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        async with self._slots:
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            try:
                results = list(await self.process([item for item, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.cancel()
                raise
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def aclose(self) -> None:
        """Cancel batches still running (their callers see CancelledError)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, fut in self._pending:
            fut.cancel()
        self._pending = []
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

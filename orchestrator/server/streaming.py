"""A server-sent-event response that stops its producer the moment the client goes away.

Starlette's own streaming response notices a disconnect only when it next writes, under
ASGI 2.4, and a search may write nothing for a long time. This one waits for the client's
``http.disconnect`` alongside the producer and cancels the producer at once, which cancels
the search and aborts its engine requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)


async def client_gone(receive: Receive) -> None:
    """Return when the client disconnects (the request body has already been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class EventStream(Response):
    """``text/event-stream`` of ``events``; ``on_close(disconnected)`` runs exactly once."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        headers: dict[str, str],
        on_close: Callable[[bool], None],
    ) -> None:
        super().__init__(
            status_code=200,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
            media_type=self.media_type,
        )
        # no Content-Length: Response.__init__ sets 0 for its empty body, which would end the
        # stream before its first event
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = events
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            producer = asyncio.create_task(self._pump(send))
            watcher = asyncio.create_task(client_gone(receive))
            try:
                done, _ = await asyncio.wait(
                    {producer, watcher}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (producer, watcher):
                    task.cancel()
                await asyncio.gather(producer, watcher, return_exceptions=True)
            failure = producer.exception() if producer in done else None
            # a server that reports a gone client by failing the write (ASGI 2.4)
            disconnected = producer not in done or isinstance(failure, OSError)
            if failure is not None and not disconnected:
                log.error("event stream failed", exc_info=failure)
        finally:
            self.on_close(disconnected)

    async def _pump(self, send: Send) -> None:
        async with contextlib.aclosing(self.events) as events:  # type: ignore[type-var]
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

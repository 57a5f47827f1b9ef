"""The HTTP client under the OpenAI engine: one small protocol, two implementations.

``AiohttpTransport`` is the one Branchwise needs (aiohttp is its only HTTP client): its cost
per request stays flat as the number of requests in flight grows (``benchmarks/http_client.py``
measures it against httpx, whose connection-pool bookkeeping grows with the pool).
``HttpxTransport`` wraps an httpx transport, for tests that answer with
``httpx.MockTransport`` and users who keep httpx; httpx is imported only then (it is not a
dependency: ``pip install httpx``).

Failures come back as two exceptions only: :class:`TransportError` (the connection failed or
broke: retry, elsewhere if possible) and its subclass :class:`TransportTimeout`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from branchwise.core.errors import EngineError

if TYPE_CHECKING:
    import httpx


class TransportError(Exception):
    """The request never got an HTTP answer (refused, reset, disconnected, bad framing)."""


class TransportTimeout(TransportError):
    """No answer within the time-out."""


@dataclass(frozen=True)
class HTTPResponse:
    """Status, headers (lower-case names) and body of one answer."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The decoded JSON body; ValueError when it is not JSON."""
        return json.loads(self.body)


class HTTPTransport(Protocol):
    """What the OpenAI engine needs from an HTTP client."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> HTTPResponse:
        """Send one request; raise :class:`TransportError` when no answer came."""
        ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """aiohttp with one keep-alive connection per request in flight, at most ``max_connections``."""

    def __init__(self, *, headers: Mapping[str, str], max_connections: int) -> None:
        self._headers = {"Content-Type": "application/json", **headers}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                skip_auto_headers=("User-Agent",),
                # our own time-out per call; aiohttp's default of 5 minutes must not cut it
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> HTTPResponse:
        session = self._open()
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                data = await response.read()
                return HTTPResponse(
                    response.status,
                    data,
                    {name.lower(): value for name, value in response.headers.items()},
                )
        except TimeoutError as exc:
            raise TransportTimeout(f"timed out after {timeout}s") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxTransport:
    """httpx, optionally over a given httpx transport (e.g. ``httpx.MockTransport``)."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError:
            raise EngineError(
                "http_client: httpx needs the httpx package (pip install httpx); "
                "the default, aiohttp, needs nothing more"
            ) from None
        self._httpx = httpx
        self._client = httpx.AsyncClient(
            headers={"Content-Type": "application/json", **headers},
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> HTTPResponse:
        try:
            response = await self._client.request(
                method, url, content=body, headers=headers, timeout=timeout
            )
        except self._httpx.TimeoutException as exc:
            raise TransportTimeout(f"timed out after {timeout}s") from exc
        except (
            self._httpx.ConnectError,
            self._httpx.ReadError,
            self._httpx.RemoteProtocolError,
            self._httpx.WriteError,
        ) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return HTTPResponse(response.status_code, response.content, dict(response.headers))

    async def aclose(self) -> None:
        await self._client.aclose()

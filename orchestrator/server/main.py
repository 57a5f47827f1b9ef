"""``branchwise serve``: load the recipes, listen, start their engines, serve until stopped."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path

from branchwise.core.errors import BranchwiseError
from branchwise.orchestrator.server.app import StrategyServer, create_app
from branchwise.orchestrator.server.catalog import ModelCatalog
from branchwise.orchestrator.server.settings import ServerLimits


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; BranchwiseError (one line) when it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BranchwiseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BranchwiseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve(
    recipes: Sequence[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
) -> None:
    """Load and check the recipes, listen, start their engines, then serve until stopped."""
    import uvicorn

    limits = limits or ServerLimits()
    loaded = ModelCatalog.load(recipes, limits)
    sock = bind(host, port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        async with ModelCatalog(loaded) as catalog:
            app = create_app(StrategyServer(catalog, limits, api_key))
            config = uvicorn.Config(app, lifespan="off", timeout_graceful_shutdown=10)
            names = ", ".join(loaded)
            bound = sock.getsockname()
            logging.getLogger("branchwise.server").info(
                "serving %s on http://%s:%s/v1%s",
                names,
                bound[0],
                bound[1],
                " (API key required)" if api_key else "",
            )
            await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()

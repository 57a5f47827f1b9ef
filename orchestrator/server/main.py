"""``branchwise serve``: load the recipes, listen, start their engines, serve until stopped.

Without an API key the server listens on loopback only and answers only requests addressed to
a loopback name: anything that can reach it could otherwise spend its engines.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

from branchwise.core.errors import BranchwiseError
from branchwise.orchestrator.server.app import LOOPBACK_HOSTS, StrategyServer, create_app
from branchwise.orchestrator.server.catalog import ModelCatalog
from branchwise.orchestrator.server.settings import ServerLimits


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).partition("%")[0]).is_loopback for info in infos
    )


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
    if api_key is None and not is_loopback(host):
        raise BranchwiseError(
            f"--host {host}: without --api-key-env the server listens on loopback only "
            "(127.0.0.1 or ::1); set an API key to serve other machines"
        )
    loaded = ModelCatalog.load(recipes, limits)
    sock = bind(host, port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        async with ModelCatalog(loaded) as catalog:
            hosts = None if api_key else LOOPBACK_HOSTS
            app = create_app(StrategyServer(catalog, limits, api_key, hosts=hosts))
            config = uvicorn.Config(app, lifespan="off", timeout_graceful_shutdown=10)
            names = ", ".join(loaded)
            bound = sock.getsockname()
            logging.getLogger("branchwise.server").info(
                "serving %s on http://%s:%s/v1%s",
                names,
                bound[0],
                bound[1],
                " (API key required)"
                if api_key
                else " with no API key: loopback only, for requests addressed to localhost; "
                "--api-key-env to serve other machines",
            )
            await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()

"""The reward-model HTTP backend (aiohttp) against a real socket: a /pooling-shaped server."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from branchwise.core.errors import ScorerError
from branchwise.orchestrator.engines.vllm_server import wait_healthy
from branchwise.rewards.http_pooling import HTTPTokenScores


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(mode: str) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def pooling(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if mode == "broken":
            return web.Response(status=500, text="EngineDeadError")
        rows = [
            {"index": i, "data": [[float(t), -float(t)] for t in ids]}
            for i, ids in enumerate(body["input"])
        ]
        return web.json_response({"data": rows})

    async def tokenize(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"tokens": [ord(c) for c in body["prompt"]]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes(
        [
            web.post("/pooling", pooling),
            web.post("/tokenize", tokenize),
            web.get("/health", health),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", seen


def test_logits_and_tokens_come_back_over_aiohttp() -> None:
    async def go() -> None:
        runner, url, seen = await _serve("ok")
        scores = HTTPTokenScores(url, "prm")
        try:
            assert await scores.encode("ab", add_special_tokens=False) == [97, 98]
            (rows,) = await scores.logits_at([([5, 6, 7], [0, 2])])
            np.testing.assert_array_equal(rows, [[5.0, -5.0], [7.0, -7.0]])
            assert seen[0]["model"] == "prm" and seen[0]["use_activation"] is False
            # the health poll the server launcher uses (standard library, no extra client)
            assert await asyncio.to_thread(wait_healthy, url, _Alive(), 5) is None
        finally:
            await scores.close()
            await runner.cleanup()

    asyncio.run(go())


class _Alive:
    returncode = None

    def poll(self) -> None:
        return None


def test_server_errors_and_refused_connections_are_scorer_errors() -> None:
    async def go() -> None:
        runner, url, _ = await _serve("broken")
        scores = HTTPTokenScores(url, "prm")
        try:
            with pytest.raises(ScorerError, match="HTTP 500: EngineDeadError"):
                await scores.logits_at([([1], [0])])
        finally:
            await scores.close()
            await runner.cleanup()
        gone = HTTPTokenScores(f"http://127.0.0.1:{_port()}", "prm")
        try:
            with pytest.raises(ScorerError, match="reward server"):
                await gone.logits_at([([1], [0])])
        finally:
            await gone.close()

    asyncio.run(go())

"""The aiohttp transport and the fleet (routing, fail-over, health) against real sockets.

Each fake server is an aiohttp application on 127.0.0.1 that answers ``/v1/completions`` the
way vLLM does; a server can be told to drop connections mid-request (a server dying during
a job) or be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from tests.unit.test_openai_engine import _completion


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeServer:
    """A vLLM-shaped completions server; ``mode`` says how it answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "ok"  # ok | drop (close the connection mid-request) | hang
        self.seen: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.root: str | None = None  # the model folder /v1/models names
        self.tokenizer: Any = None  # the server's tokenizer, for /tokenize and /detokenize
        self.shift = 0  # added to every token id /tokenize returns (a different tokenizer)
        self.detokenized = 0

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()  # the server dies with the request in flight
            await asyncio.sleep(1)
        if self.mode == "hang":
            await asyncio.sleep(2)
        if self.mode == "dead_engine":
            return web.Response(status=500, text="EngineDeadError")
        if self.mode == "limit":
            self.mode = "ok"
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0.05"})
        await asyncio.sleep(0.01)
        return web.json_response(_completion(body))

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=500 if self.mode == "dead_engine" else 200)

    async def _detokenize(self, request: web.Request) -> web.Response:
        self.detokenized += 1
        if self.tokenizer is not None:
            ids = (await request.json())["tokens"]
            return web.json_response(
                {"prompt": self.tokenizer.decode(ids, skip_special_tokens=True)}
            )
        return web.json_response({"prompt": "1+1=2\n"})

    async def _tokenize(self, request: web.Request) -> web.Response:
        assert self.tokenizer is not None
        ids = self.tokenizer.encode((await request.json())["prompt"], add_special_tokens=True)
        return web.json_response({"tokens": [t + self.shift for t in ids]})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m", "root": self.root}]})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/detokenize", self._detokenize)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/tokenize", self._tokenize)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def servers(count: int) -> AsyncIterator[list[FakeServer]]:
    fakes = [FakeServer() for _ in range(count)]
    for fake in fakes:
        await fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes:
            await fake.stop()


def _request(request_id: str = "t", affinity: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        request_id=request_id,
        prompt_token_ids=(1, 2, 3),
        sampling=SamplingSpec(max_tokens=8, stop=("\n",), logprobs=1, seed=5),
        n=2,
        affinity=affinity,
    )


def _config(urls: list[str], **extra: object) -> OpenAIEngineConfig:
    values: dict[str, object] = {"base_urls": urls, "model": "m", "backoff_seconds": 0.5}
    return OpenAIEngineConfig(**{**values, **extra})  # type: ignore[arg-type]


def test_aiohttp_is_the_default_and_sends_the_body_key_and_request_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BW_TEST_KEY", "sekret")

    async def go() -> None:
        async with servers(1) as (fake,):
            engine = OpenAIEngine(_config([fake.url], api_key_env="BW_TEST_KEY"))
            async with engine:
                assert type(engine.transport).__name__ == "AiohttpTransport"
                result = await engine.generate(_request("req-1"))
            assert [c.text for c in result.completions] == ["1+1=2\n"] * 2
            assert fake.seen[0]["prompt"] == [1, 2, 3] and fake.seen[0]["seed"] == 5
            assert fake.headers[0]["authorization"] == "Bearer sekret"
            assert fake.headers[0]["x-request-id"] == "req-1"

    asyncio.run(go())


def test_aiohttp_obeys_retry_after() -> None:
    async def go() -> None:
        async with servers(1) as (fake,):
            fake.mode = "limit"
            engine = OpenAIEngine(_config([fake.url], backoff_seconds=0.001))
            async with engine:
                started = asyncio.get_running_loop().time()
                await engine.generate(_request())
                assert asyncio.get_running_loop().time() - started >= 0.045
            assert engine.retries == 1 and len(fake.seen) == 2

    asyncio.run(go())


def test_a_server_dying_mid_request_fails_over_at_once_and_counts_once() -> None:
    async def go() -> None:
        async with servers(2) as (a, b):
            engine = OpenAIEngine(_config([a.url, b.url]))
            async with engine:
                first = await engine.generate(_request("p1-0", affinity="p1"))
                home, other = (a, b) if a.seen else (b, a)
                home.mode = "drop"
                started = asyncio.get_running_loop().time()
                again = await engine.generate(_request("p1-1", affinity="p1"))
                waited = asyncio.get_running_loop().time() - started
                later = await engine.generate(_request("p1-2", affinity="p1"))
            assert len(first.completions) == len(again.completions) == len(later.completions) == 2
            # sent once to the dying server, then straight to the other (no backoff wait)
            assert [s["prompt"] for s in home.seen] == [[1, 2, 3]] * 2
            assert len(other.seen) == 2 and waited < 0.5
            assert engine.pool.failovers == 1 and engine.retries == 1
            # the problem's affinity moved to the live server
            assert not engine.pool.healthy[engine.servers.index(home.url)]

    asyncio.run(go())


def test_a_refused_server_is_skipped_and_a_health_check_brings_it_back() -> None:
    async def go() -> None:
        async with servers(1) as (live,):
            dead = FakeServer()  # nothing listens on its port yet
            engine = OpenAIEngine(_config([dead.url, live.url], health_check_seconds=0.05))
            async with engine:
                await asyncio.gather(*(engine.generate(_request(f"r{i}")) for i in range(6)))
                assert engine.pool.healthy == [False, True]
                assert len(live.seen) == 6 and engine.pool.failovers >= 1
                await dead.start()
                try:
                    for _ in range(100):
                        if engine.pool.healthy[0]:
                            break
                        await asyncio.sleep(0.02)
                    assert engine.pool.healthy == [True, True]
                    await asyncio.gather(*(engine.generate(_request(f"s{i}")) for i in range(6)))
                    assert dead.seen  # back in the rotation
                finally:
                    await dead.stop()

    asyncio.run(go())


def test_a_server_whose_engine_died_is_avoided_then_marked_down_by_the_health_check() -> None:
    async def go() -> None:
        async with servers(2) as (a, b):
            engine = OpenAIEngine(
                _config([a.url, b.url], health_check_seconds=0.05, backoff_seconds=0.001)
            )
            async with engine:
                a.mode = "dead_engine"  # still accepts connections, answers 500
                result = await engine.generate(_request("x", affinity="p"))  # a is picked first
                assert len(result.completions) == 2 and len(a.seen) == 1 and len(b.seen) == 1
                for _ in range(100):
                    if not engine.pool.healthy[0]:
                        break
                    await asyncio.sleep(0.02)
                assert engine.pool.healthy == [False, True]
                a.mode = "ok"
                for _ in range(100):
                    if engine.pool.healthy[0]:
                        break
                    await asyncio.sleep(0.02)
                assert engine.pool.healthy == [True, True]

    asyncio.run(go())


def test_least_outstanding_routing_with_affinity() -> None:
    async def go() -> None:
        async with servers(2) as (a, b):
            engine = OpenAIEngine(_config([a.url, b.url]))
            async with engine:
                # eight problems, each sending three requests at once: problems spread
                # evenly, each problem's requests stay on one server
                await asyncio.gather(
                    *(
                        engine.generate(_request(f"p{p}-{k}", affinity=f"p{p}"))
                        for p in range(8)
                        for k in range(3)
                    )
                )
            assert len(a.seen) + len(b.seen) == 24
            assert abs(len(a.seen) - len(b.seen)) <= 6
            # and one /detokenize: the last token's own text, asked once for its id (its
            # text ends with the one-character stop string, so every completion is whole)
            assert sum(engine.pool.sent) == 24 + 1

    asyncio.run(go())


def test_every_server_gone_is_an_engine_error_naming_the_request() -> None:
    async def go() -> None:
        engine = OpenAIEngine(
            _config([FakeServer().url, FakeServer().url], max_retries=2, backoff_seconds=0.001)
        )
        async with engine:
            with pytest.raises(EngineError, match="request gone failed after 3 tries"):
                await engine.generate(_request("gone"))

    asyncio.run(go())


def test_a_timed_out_request_is_retried_but_the_server_stays_up() -> None:
    async def go() -> None:
        async with servers(2) as (a, b):
            engine = OpenAIEngine(_config([a.url, b.url], timeout=0.2, backoff_seconds=0.001))
            async with engine:
                a.mode = "hang"  # the first pick of an idle pool is the first server
                result = await engine.generate(_request("slow"))
            assert len(result.completions) == 2
            assert engine.pool.healthy == [True, True]
            assert len(a.seen) == len(b.seen) == 1  # the slow try, then the retry elsewhere

    asyncio.run(go())


POLICY = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "models" / "policy"


@pytest.mark.parametrize("agrees", [True, False])
def test_the_served_models_own_tokenizer_decodes_here_when_it_agrees(agrees: bool) -> None:
    """Without `tokenizer:`, the folder /v1/models names is used if it encodes as the server."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(POLICY), local_files_only=True)

    async def go() -> None:
        async with servers(1) as (fake,):
            fake.root, fake.tokenizer = str(POLICY), tokenizer
            fake.shift = 0 if agrees else 1
            engine = OpenAIEngine(_config([fake.url]))
            async with engine:
                ids = tuple(tokenizer.encode("12+30=42\n", add_special_tokens=False))
                text = await engine.decode(ids)
                assert text == tokenizer.decode(list(ids), skip_special_tokens=True)
                await engine.decode(ids)
                # the probe asked the server once; decoding asks it only when they disagree
                assert fake.detokenized == (1 if agrees else 3)

    asyncio.run(go())

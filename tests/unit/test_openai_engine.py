"""OpenAIEngine's retry, backoff and load spreading, against an in-process HTTP transport.

The real-server path is covered by tests/integration/test_engines.py; here the transport
lets us inject 5xx answers and refused connections deterministically.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec


def _completion(body: dict[str, object]) -> dict[str, object]:
    n = int(body["n"])  # type: ignore[call-overload]
    return {
        "choices": [
            {
                "index": i,
                "text": "1+1=2\n",
                "token_ids": [10, 11, 12, 13, 14, 15],
                "finish_reason": "stop",
                "stop_reason": "\n",
                "logprobs": {
                    "token_logprobs": [-0.1] * 6,
                    "top_logprobs": [{"token_id:10": -0.1, "token_id:99": -2.5}] * 6,
                },
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}},
    }


def _mock(handler: Callable[[httpx.Request], Any]) -> httpx.MockTransport:
    """The test's handler for completions; ``/detokenize`` answers with the mock's text."""

    async def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/detokenize"):
            return httpx.Response(200, json={"prompt": "1+1=2\n"})
        if request.url.path.endswith("/v1/models"):  # the tokenizer probe at engine start
            return httpx.Response(200, json={"data": [{"id": "m", "root": None}]})
        response = handler(request)
        return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]

    return httpx.MockTransport(route)


def _request(affinity: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        request_id="t",
        prompt_token_ids=(1, 2, 3),
        sampling=SamplingSpec(max_tokens=8, stop=("\n",), logprobs=1, seed=5),
        n=2,
        affinity=affinity,
    )


def _config(urls: list[str], **extra: object) -> OpenAIEngineConfig:
    return OpenAIEngineConfig(
        base_urls=urls,
        model="m",
        backoff_seconds=0.001,
        **extra,  # type: ignore[arg-type]
    )


def test_retries_5xx_and_refused_then_succeeds() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) == 1:
            return httpx.Response(503, text="busy")
        if len(calls) == 2:
            raise httpx.ConnectError("refused", request=request)
        body = json.loads(request.content)
        assert body["prompt"] == [1, 2, 3] and body["seed"] == 5 and body["n"] == 2
        return httpx.Response(200, json=_completion(body))

    async def go() -> None:
        engine = OpenAIEngine(_config(["http://a"]), transport=_mock(handler))
        async with engine:
            result = await engine.generate(_request())
        assert engine.retries == 2
        assert len(result.completions) == 2
        first = result.completions[0]
        assert first.ended_by_stop_string and first.token_ids == (10, 11, 12, 13, 14, 15)
        assert first.top_logprobs[0] == (-0.1,)

    asyncio.run(go())


def test_client_errors_are_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="bad max_tokens")

    async def go() -> None:
        engine = OpenAIEngine(_config(["http://a"]), transport=_mock(handler))
        async with engine:
            with pytest.raises(EngineError, match="400 bad max_tokens"):
                await engine.generate(_request())
        assert engine.retries == 0

    asyncio.run(go())


def test_rate_limits_are_retried_after_the_servers_delay() -> None:
    answers = [
        httpx.Response(429, text="slow down", headers={"Retry-After": "0.05"}),
        httpx.Response(408, text="request timeout"),
    ]
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(asyncio.get_running_loop().time())
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json=_completion(json.loads(request.content)))

    async def go() -> None:
        engine = OpenAIEngine(_config(["http://a"]), transport=_mock(handler))
        async with engine:
            result = await engine.generate(_request())
        assert engine.retries == 2 and len(result.completions) == 2
        # the first retry waited the server's 0.05 s, not our own 0.001 s backoff; the next
        # one is back on our backoff (the server's wait is not doubled)
        assert sent[1] - sent[0] >= 0.045
        assert sent[2] - sent[1] < 0.045

    asyncio.run(go())


def test_gives_up_after_max_retries_with_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="boom")

    async def go() -> None:
        engine = OpenAIEngine(_config(["http://a"], max_retries=2), transport=_mock(handler))
        async with engine:
            with pytest.raises(EngineError, match="failed after 3 tries"):
                await engine.generate(_request())

    asyncio.run(go())


def test_requests_spread_across_servers_and_affinity_sticks() -> None:
    hosts: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        await asyncio.sleep(0.01)
        return httpx.Response(200, json=_completion(json.loads(request.content)))

    async def go() -> None:
        engine = OpenAIEngine(_config(["http://a", "http://b"]), transport=_mock(handler))
        async with engine:
            await asyncio.gather(*(engine.generate(_request()) for _ in range(8)))
            assert sorted(set(hosts)) == ["a", "b"]
            assert abs(hosts.count("a") - hosts.count("b")) <= 2
            hosts.clear()
            await asyncio.gather(*(engine.generate(_request("problem-7")) for _ in range(6)))
            assert len(set(hosts)) == 1

    asyncio.run(go())


def test_text_is_the_decode_of_every_token_even_past_a_stop_string() -> None:
    """A server cuts text at the stop string inside a merged token; the engine decodes again."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/detokenize"):
            assert json.loads(request.content)["tokens"] == [7, 8]
            return httpx.Response(200, json={"prompt": "a.\n\n\n"})
        choice = {
            "index": 0,
            "text": "a.\n\n",
            "token_ids": [7, 8],
            "finish_reason": "stop",
            "stop_reason": "\n\n",
        }
        return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 3}})

    async def main() -> str:
        request = GenerationRequest("t", (1, 2, 3), SamplingSpec(stop=("\n\n",)), n=1)
        async with OpenAIEngine(
            _config(["http://a"]), transport=httpx.MockTransport(handler)
        ) as engine:
            result = await engine.generate(request)
        return result.completions[0].text

    assert asyncio.run(main()) == "a.\n\n\n"

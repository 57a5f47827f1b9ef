"""The OpenAI engine completes a stop-cut text from the last token's own text, exactly.

A server cuts a completion's text at the stop string even when the stop string ends inside
the last token (the testbed's byte-level BPE merges ".\\n\\n" into one token). Without a local
tokenizer the engine used to ask ``/detokenize`` for every such completion; now it asks once
per last-token id and completes the text itself where that is exact (a one-character stop
string). Checked against the tokenizer's own decode over every cut point of the testbed's
solutions, with the server simulated as vLLM behaves.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples/testbed/models/policy"
SOLUTIONS = REPO / "examples/testbed/data/eval.jsonl"


def _cut(tokenizer: Any, ids: list[int], stop: str) -> tuple[list[int], str] | None:
    """What vLLM returns: the ids up to the token that completes ``stop``, the text cut at it."""
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        at = text.find(stop)
        if at >= 0:
            return ids[:k], text[: at + len(stop)]
    return None


def _cases(tokenizer: Any, stop: str) -> list[tuple[list[int], str]]:
    cases = []
    for line in SOLUTIONS.read_text().splitlines()[:16]:
        ids = tokenizer.encode(json.loads(line)["solution"], add_special_tokens=False)
        start = 0
        while start < len(ids):  # every step's completion, as a step search would ask
            found = _cut(tokenizer, ids[start:], stop)
            if found is None:
                break
            cases.append(found)
            start += len(found[0])
    return cases


def _engine(
    tokenizer: Any, served: list[tuple[list[int], str]], stop: str
) -> tuple[OpenAIEngine, dict[str, int]]:
    asked = {"detokenize": 0}

    def route(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/v1/models"):  # served under a name that is not a local folder
            return httpx.Response(200, json={"data": [{"id": "policy", "root": "/nowhere"}]})
        body = json.loads(request.content)
        if path.endswith("/detokenize"):
            asked["detokenize"] += 1
            text = tokenizer.decode(body["tokens"], skip_special_tokens=True)
            return httpx.Response(200, json={"prompt": text})
        ids, text = served[int(request.headers["X-Request-Id"].split("-")[-1])]
        choice = {"index": 0, "text": text, "token_ids": ids, "finish_reason": "stop",
                  "stop_reason": stop, "logprobs": None}  # fmt: skip
        return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 3}})

    config = OpenAIEngineConfig(base_urls=["http://a"], model="policy")
    return OpenAIEngine(config, transport=httpx.MockTransport(route)), asked


def _request(index: int, stop: str) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"r-{index}",
        prompt_token_ids=(1, 2, 3),
        sampling=SamplingSpec(max_tokens=64, stop=(stop,)),
        n=1,
    )


@pytest.mark.parametrize("stop", ["\n", "."])
def test_one_character_stops_are_completed_exactly_with_one_ask_per_token_id(
    testbed_tokenizer: Any, stop: str
) -> None:
    tokenizer = testbed_tokenizer
    served = _cases(tokenizer, stop)
    short = [(ids, text) for ids, text in served if tokenizer.decode(ids) != text]
    assert len(served) > 40 and short  # some completions are cut inside their last token

    async def go() -> tuple[list[str], dict[str, int]]:
        engine, asked = _engine(tokenizer, served, stop)
        async with engine:
            results = await asyncio.gather(
                *(engine.generate(_request(i, stop)) for i in range(len(served)))
            )
        return [r.completions[0].text for r in results], asked

    texts, asked = asyncio.run(go())
    assert texts == [tokenizer.decode(ids, skip_special_tokens=True) for ids, _ in served]
    distinct_last = {ids[-1] for ids, _ in served}
    assert asked["detokenize"] == len(distinct_last) < len(served) / 10


def test_longer_stop_strings_still_ask_the_server(testbed_tokenizer: Any) -> None:
    tokenizer = testbed_tokenizer
    served = _cases(tokenizer, "\n\n")[:30]

    async def go() -> tuple[list[str], dict[str, int]]:
        engine, asked = _engine(tokenizer, served, "\n\n")
        async with engine:
            results = [await engine.generate(_request(i, "\n\n")) for i in range(len(served))]
        return [r.completions[0].text for r in results], asked

    texts, asked = asyncio.run(go())
    assert texts == [tokenizer.decode(ids, skip_special_tokens=True) for ids, _ in served]
    assert asked["detokenize"] == len(served)  # a two-character stop may start a token early


def test_the_engine_is_ready_when_its_start_returns(testbed_tokenizer: Any) -> None:
    """The tokenizer is loaded (or the served model's probed) at start, not in a request."""
    tokenizer = testbed_tokenizer
    seen: list[str] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        body = json.loads(request.content) if request.content else {}
        if request.url.path.endswith("/v1/models"):
            return httpx.Response(200, json={"data": [{"id": "served-name", "root": str(POLICY)}]})
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(200, json={"tokens": tokenizer.encode(body["prompt"])})
        text = tokenizer.decode(body["tokens"], skip_special_tokens=True)
        return httpx.Response(200, json={"prompt": text})

    async def go() -> None:
        named = OpenAIEngineConfig(base_urls=["http://a"], model="m", tokenizer=str(POLICY))
        async with OpenAIEngine(named) as engine:
            assert engine._tokenizer is not None  # loaded by the start
        served = OpenAIEngineConfig(base_urls=["http://a"], model="served-name")
        async with OpenAIEngine(served, transport=httpx.MockTransport(route)) as engine:
            # probed at start: a model served under another name than its folder
            assert seen == ["/v1/models", "/tokenize", "/detokenize"]
            assert engine._served_probe is not None and engine._served_probe.done()
            assert engine._served_probe.result() is not None
            assert await engine.decode((5, 6, 7)) == tokenizer.decode([5, 6, 7])
            assert len(seen) == 3  # decoded here: nothing more asked

    asyncio.run(go())

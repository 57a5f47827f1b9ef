"""The strategy server on 127.0.0.1 over the session's real vLLM engine, driven by the official
``openai`` client: answers, streams, errors, auth, a client that walks away mid-search, and a
bounded load.

uvicorn runs on the session engine's own event loop (``EngineLoop``), so the server shares
the one in-process engine; the clients run in the test thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from benchmarks.server_load import run_load
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import Recipe, parse_recipe
from branchwise.orchestrator.server.app import TRACE_HEADER, StrategyServer, create_app
from branchwise.orchestrator.server.catalog import ModelCatalog
from branchwise.orchestrator.server.main import bind
from branchwise.orchestrator.server.settings import ServerLimits
from tests.integration.conftest import POLICY, EngineLoop
from tests.integration.conftest import TESTBED as SHARED_TESTBED

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[2]
KEY = "integration-key"


# The testbed specifics, in one place (the shared ones come from conftest.TESTBED).
TESTBED: dict[str, Any] = {
    "model": str(POLICY),
    "prompt": SHARED_TESTBED["prompt"],
    "step_delimiter": SHARED_TESTBED["step_delimiter"],
    "answer": SHARED_TESTBED["answer"],
    "questions": REPO / "examples" / "testbed" / "data" / "eval.jsonl",
    "max_tokens": 96,
}


def served_recipe(strategy: dict[str, Any], **sampling: Any) -> Recipe:
    return parse_recipe(
        {
            "engine": {"kind": "vllm", "model": TESTBED["model"]},
            "strategy": strategy,
            "sampling": {"temperature": 1.0, "max_tokens": TESTBED["max_tokens"], **sampling},
            "prompt": TESTBED["prompt"],
            "step_delimiter": TESTBED["step_delimiter"],
            "answer": TESTBED["answer"],
            "seed": 0,
        }
    )


def questions(count: int = 20) -> list[str]:
    return [p.question for p in load_problems(TESTBED["questions"], limit=count)]


@dataclass
class LiveServer:
    url: str
    server: StrategyServer
    engine: VLLMEngine
    loop: EngineLoop

    def client(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=KEY, max_retries=0, **options)

    def engine_counts(self) -> tuple[int, int]:
        """Requests in flight: VLLMEngine's own set, and vLLM's unfinished requests."""

        async def read() -> tuple[int, int]:
            return len(self.engine._inflight), self.engine.llm.get_num_unfinished_requests()

        return self.loop.run(read())


@pytest.fixture(scope="module")
def live_server(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> Iterator[LiveServer]:
    recipes = {
        # the everyday model: self-consistency over 4 samples
        "sc": served_recipe({"name": "self_consistency", "n": 4}),
        # rounds of 2, 2, 4, 8 samples: its best answer so far changes as they come in
        "adaptive": served_recipe(
            {"name": "adaptive_self_consistency", "max_samples": 16, "confidence": 0.999}
        ),
        # a search long enough to walk away from: 2048 samples that rarely stop early, eight
        # waves of 256 sequences (one wave took 2.7 s on 2 CPU cores). The tests cancel it
        # after 1.5 s, so its length costs nothing; it must only outlast that on a fast machine
        "long": served_recipe(
            {"name": "self_consistency", "n": 2048}, temperature=2.0, max_tokens=200
        ),
    }
    catalog = ModelCatalog(recipes, engines={name: vllm_engine for name in recipes})
    limits = ServerLimits(max_body_bytes=65_536, max_concurrency=64, progress_interval=0.01)
    engine_loop.run(catalog.__aenter__())
    strategy_server = StrategyServer(catalog, limits, api_key=KEY)
    config = uvicorn.Config(create_app(strategy_server), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    running = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), engine_loop.loop)
    deadline = time.monotonic() + 30
    while not server.started:
        if running.done() or time.monotonic() > deadline:
            running.result(0)
            pytest.fail("the strategy server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", strategy_server, vllm_engine, engine_loop)
    finally:
        server.should_exit = True
        running.result(30)
        sock.close()
        engine_loop.run(catalog.__aexit__(None, None, None))


def test_chat_completion_through_the_openai_client(live_server: LiveServer) -> None:
    client = live_server.client()
    question = questions(1)[0]
    raw = client.chat.completions.with_raw_response.create(
        model="sc", messages=[{"role": "user", "content": question}], seed=1
    )
    completion = raw.parse()
    facts = completion.model_extra["branchwise"]  # type: ignore[index]
    assert raw.headers[TRACE_HEADER] == facts["trace_id"]
    assert completion.id == "chatcmpl-" + facts["trace_id"]
    text = completion.choices[0].message.content or ""
    assert facts["answer"] is not None and facts["answer"] in text
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == facts["usage"]["generated_tokens"] > 0
    assert usage.prompt_tokens == facts["usage"]["prompt_tokens"] > 0
    assert facts["detail"]["samples"] == 4
    # the same question again: vLLM serves the prompt's full blocks from its prefix cache
    again = client.chat.completions.create(
        model="sc", messages=[{"role": "user", "content": question}], seed=1
    )
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    assert (again.usage.prompt_tokens_details.cached_tokens or 0) > 0
    assert again.choices[0].message.content == text  # same seed, same search
    assert live_server.engine_counts() == (0, 0)


def test_streamed_chat_through_the_openai_client(live_server: LiveServer) -> None:
    client = live_server.client()
    question = questions(2)[1]
    plain = client.chat.completions.create(
        model="sc", messages=[{"role": "user", "content": question}], seed=2
    )
    stream = client.chat.completions.create(
        model="sc",
        messages=[{"role": "user", "content": question}],
        seed=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    facts = finals[0].model_extra["branchwise"]  # type: ignore[index]
    assert (
        facts["event"] == "final" and facts["answer"] == plain.model_extra["branchwise"]["answer"]
    )  # type: ignore[index]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == facts["usage"]["generated_tokens"]


def test_a_stream_reports_the_best_answer_so_far_from_real_samples(live_server: LiveServer) -> None:
    client = live_server.client()
    seen: list[dict[str, Any]] = []
    for index, question in enumerate(questions(4)):
        stream = client.chat.completions.create(
            model="adaptive",
            messages=[{"role": "user", "content": question}],
            stream=True,
            seed=index,
        )
        facts = [c.model_extra["branchwise"] for c in stream if c.model_extra]  # type: ignore[index]
        progress = [f for f in facts if f["event"] == "progress"]
        assert facts[-1]["event"] == "final"
        for update in progress:
            assert update["answer"] is None or update["answer"] in update["text"]
        seen += progress
    # on real samples, rounds finish over time and the vote in progress is reported
    assert seen, "no progress event in 4 streamed searches"


def test_completions_and_models_through_the_openai_client(live_server: LiveServer) -> None:
    client = live_server.client()
    assert sorted(m.id for m in client.models.list()) == ["adaptive", "long", "sc"]
    completion = client.completions.create(model="sc", prompt=questions(3)[2], max_tokens=64)
    facts = completion.model_extra["branchwise"]  # type: ignore[index]
    assert facts["answer"] is not None and facts["answer"] in completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens <= 4 * 64


def test_bad_requests_get_clean_openai_errors(live_server: LiveServer) -> None:
    client = live_server.client()
    messages: Any = [{"role": "user", "content": "Ann has 3 pens. How many pens now?"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=messages)
    assert "model 'nope' does not exist" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="sc", messages=messages, temperature=7)
    assert bad.value.param == "temperature"  # type: ignore[attr-defined]
    assert "temperature" in bad.value.message
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model="sc", messages=messages, extra_body={"tools": []})
    assert "tools" in unsupported.value.message
    with pytest.raises(openai.APIStatusError) as big:
        client.chat.completions.create(
            model="sc", messages=[{"role": "user", "content": "x" * 100_000}]
        )
    assert big.value.status_code == 413
    assert "65536 bytes" in big.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=live_server.url + "/v1", api_key="wrong", max_retries=0
        ).models.list()
    raw = httpx.post(
        live_server.url + "/v1/chat/completions",
        content=b"{",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    assert live_server.engine_counts() == (0, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_walks_away_aborts_the_search_in_vllm(
    live_server: LiveServer, stream: bool
) -> None:
    stats = live_server.server.stats
    cancelled = stats.cancelled
    client = live_server.client(timeout=30)
    messages: Any = [{"role": "user", "content": questions(1)[0]}]
    started = time.monotonic()
    if stream:
        events = client.chat.completions.create(model="long", messages=messages, stream=True)
        next(iter(events))  # the role chunk: the search has started
        busy = _busy_engine(live_server)
        events.close()
    else:
        quick = client.with_options(timeout=1.5)
        failure: list[BaseException] = []

        def ask() -> None:
            try:
                quick.chat.completions.create(model="long", messages=messages)
            except BaseException as exc:
                failure.append(exc)

        asker = threading.Thread(target=ask)
        asker.start()
        busy = _busy_engine(live_server)
        asker.join(30)  # the client gives up after 1.5 s and closes its connection
        assert len(failure) == 1 and isinstance(failure[0], openai.APITimeoutError)
    left = time.monotonic()
    _wait_for(lambda: live_server.engine_counts() == (0, 0), 20)
    drained = time.monotonic() - left
    assert busy[0] >= 1 and busy[1] >= 1
    # the engine drains while the search task unwinds; the server counts it just after
    _wait_for(lambda: (stats.cancelled, stats.running) == (cancelled + 1, 0), 10)
    print(
        f"\nstream={stream}: in flight at disconnect {busy}, drained in {drained:.2f} s "
        f"({left - started:.1f} s after the request)"
    )
    assert drained < 10


def test_bounded_load_loses_nothing(live_server: LiveServer) -> None:
    stats = live_server.server.stats
    before = (stats.started, stats.completed)
    report = asyncio.run(
        run_load(live_server.url, "sc", questions(50), requests=200, concurrency=32, api_key=KEY)
    )
    assert report.failures == []
    assert report.ok == 200 and len(set(report.trace_ids)) == 200
    assert (stats.started - before[0], stats.completed - before[1]) == (200, 200)
    assert stats.running == 0 and stats.rejected_busy == 0
    assert live_server.engine_counts() == (0, 0)
    summary = report.summary()
    print(
        f"\nload: p50 {summary['latency_p50']} s, p90 {summary['latency_p90']} s, p99 "
        f"{summary['latency_p99']} s, {summary['requests_per_second']} requests/s"
    )


def _busy_engine(live: LiveServer) -> tuple[int, int]:
    """The engine's counts once the search's requests are running in vLLM."""
    _wait_for(lambda: live.engine_counts()[1] > 0, 30)
    time.sleep(0.3)
    return live.engine_counts()


def _wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        time.sleep(0.05)

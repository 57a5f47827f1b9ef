"""The strategy server on the scripted engine: the app in process (httpx's ASGI transport, or
raw ASGI messages where a test needs to disconnect), no sockets, no vLLM."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from branchwise.core.problem import Problem
from branchwise.orchestrator.cli import main
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.server.app import TRACE_HEADER, StrategyServer, create_app
from branchwise.orchestrator.server.catalog import ModelCatalog, request_recipe
from branchwise.orchestrator.server.errors import ApiError
from branchwise.orchestrator.server.main import bind
from branchwise.orchestrator.server.protocol import parse_request
from branchwise.orchestrator.server.responses import jsonable
from branchwise.orchestrator.server.settings import ServerLimits
from tests.conftest import make_problem, teach

PROBLEMS = [make_problem(i) for i in range(4)]
KEY = "s3cret-key"
JSON = {"Content-Type": "application/json"}


def recipe_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "engine": {"kind": "scripted", "error_rate": 0.3},
        "strategy": {"name": "self_consistency", "n": 8},
        "sampling": {"temperature": 1.0, "max_tokens": 64},
        "prompt": {"style": "chat", "system": "Solve step by step."},
    }
    data.update(extra)
    return data


@dataclass
class Served:
    client: httpx.AsyncClient
    server: StrategyServer
    engine: ScriptedEngine
    app: Any


@asynccontextmanager
async def served(
    data: dict[str, Any] | None = None,
    *,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    engine: ScriptedEngine | None = None,
    hosts: frozenset[str] | None = None,
) -> AsyncIterator[Served]:
    recipe = parse_recipe(data or recipe_data())
    engines = {"sc": engine} if engine is not None else None
    async with ModelCatalog({"sc": recipe}, engines=engines) as catalog:
        scripted = catalog.models["sc"].orchestrator.engine
        assert isinstance(scripted, ScriptedEngine)
        teach(scripted, PROBLEMS)
        server = StrategyServer(catalog, limits or ServerLimits(), api_key, hosts=hosts)
        app = create_app(server)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Served(client, server, scripted, app)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))  # type: ignore[arg-type]


def chat(question: str = PROBLEMS[0].question, **extra: Any) -> dict[str, Any]:
    return {"model": "sc", "messages": [{"role": "user", "content": question}], **extra}


def events(text: str) -> list[Any]:
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# answers, usage, trace ids -------------------------------------------------------------------


def test_chat_completion_answers_with_the_search_usage_and_a_trace_id() -> None:
    async def go() -> None:
        async with served() as s:
            response = await s.client.post("/v1/chat/completions", json=chat())
            assert response.status_code == 200, response.text
            body = response.json()
            trace = response.headers[TRACE_HEADER]
            assert body["branchwise"]["trace_id"] == trace and trace in body["id"]
            assert body["object"] == "chat.completion"
            message = body["choices"][0]["message"]
            assert message["role"] == "assistant"
            answer = body["branchwise"]["answer"]
            assert message["content"].rstrip().endswith(f"Answer: {answer}")
            usage, mine = body["usage"], body["branchwise"]["usage"]
            assert usage["prompt_tokens"] == mine["prompt_tokens"] > 0
            assert (
                usage["completion_tokens"] == mine["generated_tokens"] == s.engine.generated_tokens
            )
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            assert cached == mine["cached_prompt_tokens"]
            assert body["branchwise"]["detail"]["samples"] == 8
            # the engine's request ids carry the trace id
            assert all(r.request_id.startswith(trace) for r in s.engine.requests)
            # the second identical request hits the (scripted) prefix cache
            again = (await s.client.post("/v1/chat/completions", json=chat())).json()
            assert again["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
            assert again["branchwise"]["trace_id"] != trace
            assert s.server.stats.completed == 2 and s.server.stats.running == 0

    run(go)


def test_chat_rendering_puts_the_recipe_system_prompt_first_then_the_clients() -> None:
    data = recipe_data(
        prompt={
            "style": "chat",
            "system": "Recipe rule.",
            "few_shot": [{"question": "Q1", "answer": "A1"}],
        }
    )

    async def go() -> None:
        async with served(data) as s:
            messages = [
                {"role": "system", "content": "Client rule."},
                {"role": "user", "content": "Earlier question"},
                {"role": "assistant", "content": "Earlier answer"},
                {"role": "user", "content": [{"type": "text", "text": PROBLEMS[1].question}]},
            ]
            response = await s.client.post(
                "/v1/chat/completions", json={"model": "sc", "messages": messages}
            )
            assert response.status_code == 200, response.text
            prompt = s.engine.detokenize(s.engine.requests[0].prompt_token_ids)
            assert prompt == (
                "<|im_start|>system\nRecipe rule.\n\nClient rule.<|im_end|>\n"
                "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                "<|im_start|>user\nEarlier question<|im_end|>\n"
                "<|im_start|>assistant\nEarlier answer<|im_end|>\n"
                f"<|im_start|>user\n{PROBLEMS[1].question}<|im_end|>\n<|im_start|>assistant\n"
            )
            assert response.json()["branchwise"]["answer"] is not None

    run(go)


def test_a_conversation_the_chat_template_refuses_is_a_400_and_starts_no_search() -> None:
    template = (
        "{% if messages|length > 2 %}{{ raise_exception('roles must alternate') }}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    )
    data = recipe_data(prompt={"style": "chat", "chat_template": template})

    async def go() -> None:
        async with served(data) as s:
            ok = await s.client.post("/v1/chat/completions", json=chat())
            assert ok.status_code == 200
            turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
            body = {"model": "sc", "messages": [*turns, {"role": "user", "content": "c"}]}
            response = await s.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "messages"
            stats = s.server.stats
            assert (stats.started, stats.completed, stats.failed, stats.running) == (1, 1, 0, 0)

    run(go)


def test_plain_recipes_take_the_last_user_message_as_the_question() -> None:
    data = recipe_data(prompt={"template": "Q: {question}\n"})

    async def go() -> None:
        async with served(data) as s:
            messages = [
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "ignored too"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": PROBLEMS[2].question},
            ]
            response = await s.client.post(
                "/v1/chat/completions", json={"model": "sc", "messages": messages}
            )
            assert response.status_code == 200, response.text
            prompt = s.engine.detokenize(s.engine.requests[0].prompt_token_ids)
            assert prompt == f"Q: {PROBLEMS[2].question}\n"

    run(go)


def test_completions_take_the_prompt_as_the_question() -> None:
    async def go() -> None:
        async with served() as s:
            for prompt in (PROBLEMS[0].question, [PROBLEMS[0].question]):
                response = await s.client.post(
                    "/v1/completions", json={"model": "sc", "prompt": prompt, "seed": 3}
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["object"] == "text_completion"
                text = body["choices"][0]["text"]
                assert text.rstrip().endswith(f"Answer: {body['branchwise']['answer']}")
            chat_body = (await s.client.post("/v1/chat/completions", json=chat(seed=3))).json()
            # same question, same seed: the completion is the chat answer (same rendering)
            assert chat_body["choices"][0]["message"]["content"] == text

    run(go)


def test_models_lists_each_recipe_by_name() -> None:
    async def go() -> None:
        async with served() as s:
            body = (await s.client.get("/v1/models")).json()
            assert body["object"] == "list"
            (model,) = body["data"]
            assert model["id"] == "sc" and model["object"] == "model"
            assert model["branchwise"]["strategy"] == "self_consistency"

    run(go)


# overrides ------------------------------------------------------------------------------


def test_overrides_reach_the_search_and_the_same_seed_gives_the_same_answer() -> None:
    async def go() -> None:
        async with served() as s:
            request = chat(
                temperature=0.5, top_p=0.9, max_tokens=48, seed=7, n=1, user="u1",
                budget={"max_generated_tokens": 4000, "max_engine_calls": 3},
            )  # fmt: skip
            first = (await s.client.post("/v1/chat/completions", json=request)).json()
            sampling = s.engine.requests[-1].sampling
            assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == (0.5, 0.9, 48)
            assert first["branchwise"]["budget"] == {
                "max_generated_tokens": 4000,
                "max_engine_calls": 3,
                "max_seconds": 300.0,
            }
            second = (await s.client.post("/v1/chat/completions", json=request)).json()
            assert first["choices"] == second["choices"]
            other = await s.client.post("/v1/chat/completions", json={**request, "seed": 8})
            assert other.json()["branchwise"]["detail"] != first["branchwise"]["detail"]

    run(go)


def test_a_small_budget_returns_the_best_answer_so_far_within_it() -> None:
    async def go() -> None:
        async with served() as s:
            body = (
                await s.client.post(
                    "/v1/chat/completions", json=chat(budget={"max_engine_calls": 1})
                )
            ).json()
            assert body["branchwise"]["usage"]["engine_calls"] == 1
            tight = await s.client.post(
                "/v1/chat/completions", json=chat(budget={"max_generated_tokens": 8})
            )
            assert tight.status_code == 200
            assert tight.json()["usage"]["completion_tokens"] <= 8

    run(go)


def test_recipes_with_the_same_engine_section_share_one_engine() -> None:
    one = parse_recipe(recipe_data())
    two = parse_recipe(recipe_data(strategy={"name": "best_of_n", "n": 2, "scorer": "v"},
                                   scorers=[{"kind": "mean_logprob", "name": "v"}],
                                   sampling={"max_tokens": 64, "logprobs": 0}))  # fmt: skip
    other = parse_recipe(recipe_data(engine={"kind": "scripted", "error_rate": 0.1}))
    catalog = ModelCatalog({"one": one, "two": two, "other": other})
    engines = {name: model.orchestrator.engine for name, model in catalog.models.items()}
    assert engines["one"] is engines["two"] and engines["other"] is not engines["one"]


def test_request_recipe_caps_what_the_recipe_leaves_unlimited() -> None:
    recipe = parse_recipe(recipe_data(budget={"max_seconds": 1000, "max_nodes": 50}))
    limits = ServerLimits(max_generated_tokens=999, max_seconds=20)
    request = parse_request(chat(), "chat", limits)
    budget = request_recipe(recipe, request, limits).budget
    assert (budget.max_generated_tokens, budget.max_seconds, budget.max_nodes) == (999, 20, 50)


def test_an_arithmetic_recipe_refuses_a_request_for_greedy_samples() -> None:
    recipe = parse_recipe(
        recipe_data(sampling={"temperature": 0.8, "max_tokens": 64, "method": "arithmetic"})
    )
    limits = ServerLimits()
    with pytest.raises(ApiError, match="temperature: model 'sc' spreads its samples") as caught:
        request_recipe(recipe, parse_request(chat(temperature=0), "chat", limits), limits)
    assert caught.value.status == 400 and caught.value.param == "temperature"
    allowed = request_recipe(recipe, parse_request(chat(temperature=0.5), "chat", limits), limits)
    assert allowed.sampling.temperature == 0.5 and allowed.sampling.method == "arithmetic"


# refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(tools=[{"type": "function"}]), "tools"),
        (chat(temperature=3), "temperature"),
        (chat(temperature="hot"), "temperature"),
        (chat(top_p=0), "top_p"),
        (chat(max_tokens=10**6), "max_tokens"),
        (chat(max_tokens=True), "max_tokens"),
        (chat(max_tokens=10, max_completion_tokens=20), "max_completion_tokens"),
        (chat(seed=1.5), "seed"),
        (chat(n=2), "n"),
        (chat(n=True), "n"),
        (chat(logprobs=True), "logprobs"),
        (chat(stop=["\n"]), "stop"),
        (chat(budget={"max_generated_tokens": 10**9}), "budget.max_generated_tokens"),
        (chat(budget={"max_seconds": 0}), "budget.max_seconds"),
        (chat(budget={"tokens": 5}), "budget.tokens"),
        (chat(budget=5), "budget"),
        (chat(stream=False, stream_options={"include_usage": True}), "stream_options"),
        (chat(stream="yes"), "stream"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "sc", "messages": []}, "messages"),
        ({"model": "sc", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"model": "sc", "messages": [{"role": "user", "content": "hi", "tool_call_id": 1}]},
            "messages[0].tool_call_id",
        ),
        (
            {"model": "sc", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "model": "sc",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "prefill"},
                ],
            },
            "messages[1].role",
        ),
    ],
)
def test_bad_fields_are_400s_that_name_the_field(body: dict[str, Any], param: str) -> None:
    async def go() -> None:
        async with served() as s:
            response = await s.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == param
            assert error["type"] == "invalid_request_error"
            assert error["message"].startswith(param)
            assert s.engine.requests == [] and s.server.stats.started == 0

    run(go)


def test_neutral_values_and_nulls_are_accepted() -> None:
    async def go() -> None:
        async with served() as s:
            body = chat(
                n=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False,
                temperature=None, stop=None, tools=None,
            )  # fmt: skip
            assert (await s.client.post("/v1/chat/completions", json=body)).status_code == 200
            completion = {
                "model": "sc",
                "prompt": "x",
                "echo": False,
                "best_of": 1,
                "logprobs": None,
            }
            assert (await s.client.post("/v1/completions", json=completion)).status_code == 200

    run(go)


def test_unknown_model_bad_json_oversize_and_unknown_routes_get_openai_shaped_errors() -> None:
    async def go() -> None:
        async with served(limits=ServerLimits(max_body_bytes=2048)) as s:
            response = await s.client.post("/v1/chat/completions", json={**chat(), "model": "nope"})
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "model_not_found"
            assert "sc" in response.json()["error"]["message"]

            response = await s.client.post(
                "/v1/chat/completions", content=b"{not json", headers=JSON
            )
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "invalid_json"

            response = await s.client.post("/v1/completions", json=[1, 2])
            assert response.status_code == 400

            big = chat("x" * 4000)
            response = await s.client.post("/v1/chat/completions", json=big)
            assert response.status_code == 413
            assert "2048 bytes" in response.json()["error"]["message"]

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
                for _ in range(10):
                    yield b" " * 500

            response = await s.client.post("/v1/chat/completions", content=chunks(), headers=JSON)
            assert response.status_code == 413

            response = await s.client.get("/v1/nothing")
            assert response.status_code == 404 and "error" in response.json()
            response = await s.client.get("/v1/chat/completions")
            assert response.status_code == 405 and "error" in response.json()
            assert s.server.stats.started == 0

    run(go)


def test_api_key_is_required_when_set() -> None:
    async def go() -> None:
        async with served(api_key=KEY) as s:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                response = await s.client.post("/v1/chat/completions", json=chat(), headers=headers)
                assert response.status_code == 401
                assert response.json()["error"]["code"] == "invalid_api_key"
                assert (await s.client.get("/v1/models", headers=headers)).status_code == 401
            good = {"Authorization": f"Bearer {KEY}"}
            assert (await s.client.get("/v1/models", headers=good)).status_code == 200
            response = await s.client.post("/v1/chat/completions", json=chat(), headers=good)
            assert response.status_code == 200
            assert (await s.client.get("/health")).status_code == 200

    run(go)


def test_past_the_concurrency_limit_requests_get_429_with_retry_after() -> None:
    engine = ScriptedEngine(error_rate=0.0, seconds_per_token=0.01)

    async def go() -> None:
        limits = ServerLimits(max_concurrency=2, retry_after_seconds=3)
        async with served(limits=limits, engine=engine) as s:
            slow = [
                asyncio.create_task(s.client.post("/v1/chat/completions", json=chat(p.question)))
                for p in PROBLEMS[:2]
            ]
            while s.server.stats.running < 2:
                await asyncio.sleep(0.005)
            busy = await s.client.post("/v1/chat/completions", json=chat())
            assert busy.status_code == 429
            assert busy.headers["Retry-After"] == "3"
            assert busy.json()["error"]["code"] == "server_busy"
            assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]
            assert (await s.client.post("/v1/chat/completions", json=chat())).status_code == 200
            stats = s.server.stats
            assert (stats.rejected_busy, stats.completed, stats.running) == (1, 3, 0)

    run(go)


def test_a_failed_search_is_a_500_with_the_trace_id() -> None:
    engine = ScriptedEngine(fail_after=0)

    async def go() -> None:
        async with served(engine=engine) as s:
            response = await s.client.post("/v1/chat/completions", json=chat())
            assert response.status_code == 500
            error = response.json()["error"]
            assert error["type"] == "server_error" and error["code"] == "search_failed"
            assert response.headers[TRACE_HEADER] in error["message"]
            assert "Traceback" not in response.text
            assert s.server.stats.failed == 1 and s.server.stats.running == 0

    run(go)


# streaming ------------------------------------------------------------------------------


def test_streamed_chat_ends_with_the_same_answer_as_the_plain_response() -> None:
    async def go() -> None:
        async with served() as s:
            plain = (await s.client.post("/v1/chat/completions", json=chat(seed=5))).json()
            request = chat(seed=5, stream=True, stream_options={"include_usage": True})
            response = await s.client.post("/v1/chat/completions", json=request)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert "content-length" not in response.headers
            chunks = events(response.text)
            assert chunks[-1] == "[DONE]"
            first, *rest, usage, _ = chunks
            assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in rest)
            assert text == plain["choices"][0]["message"]["content"]
            final = rest[-1]
            assert final["choices"][0]["finish_reason"] == "stop"
            assert final["branchwise"]["answer"] == plain["branchwise"]["answer"]
            assert usage["choices"] == []
            assert usage["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
            assert {c["id"] for c in chunks[:-1]} == {"chatcmpl-" + response.headers[TRACE_HEADER]}

    run(go)


def test_streaming_reports_the_best_answer_so_far_as_it_changes() -> None:
    engine = ScriptedEngine(error_rate=0.5, seconds_per_token=0.002)
    data = recipe_data(
        strategy={"name": "adaptive_self_consistency", "max_samples": 16, "confidence": 0.999}
    )

    async def go() -> None:
        async with served(data, limits=ServerLimits(progress_interval=0.01), engine=engine) as s:
            body = {"model": "sc", "prompt": PROBLEMS[3].question, "stream": True}
            response = await s.client.post("/v1/completions", json=body)
            chunks = events(response.text)
            progress = [c["branchwise"] for c in chunks[:-1] if "branchwise" in c]
            updates, final = progress[:-1], progress[-1]
            assert updates and all(p["event"] == "progress" for p in updates)
            assert final["event"] == "final" and final["answer"] is not None
            # each update is a change, and the path text ends with that answer
            keys = [(p["answer"], p["node_id"]) for p in updates]
            assert all(a != b for a, b in itertools.pairwise(keys))
            assert all(p["text"].rstrip().endswith(f"Answer: {p['answer']}") for p in updates)
            assert [p["generated_tokens"] for p in updates] == sorted(
                p["generated_tokens"] for p in updates
            )
            text = "".join(c["choices"][0]["text"] for c in chunks[:-1])
            assert text.rstrip().endswith(f"Answer: {final['answer']}")

    run(go)


def test_a_failed_search_ends_the_stream_with_an_error_event() -> None:
    async def go() -> None:
        async with served(engine=ScriptedEngine(fail_after=0)) as s:
            response = await s.client.post("/v1/chat/completions", json=chat(stream=True))
            last = events(response.text)[-1]
            assert last["error"]["code"] == "search_failed"
            assert s.server.stats.failed == 1 and s.server.stats.running == 0

    run(go)


# disconnects ------------------------------------------------------------------------------


async def call_and_disconnect(
    app: Any, body: dict[str, Any], gone_when: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Drive the ASGI app by hand: the client disconnects once ``gone_when(sent)`` holds."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode())],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": payload, "more_body": False}
        while not gone_when(sent):
            await asyncio.sleep(0.005)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_cancels_the_search_and_its_engine_requests(
    stream: bool,
) -> None:
    engine = ScriptedEngine(error_rate=0.0, seconds_per_token=0.05)  # ~2 s per sample

    async def go() -> None:
        async with served(engine=engine) as s:
            loop = asyncio.get_running_loop()
            start = loop.time()
            sent = await call_and_disconnect(
                s.app, chat(stream=stream), lambda sent: bool(engine.requests)
            )
            elapsed = loop.time() - start
            assert elapsed < 1.0  # not the ~2 s the search would take
            assert len(engine.aborted) == len(engine.requests) == 1
            assert engine.generated_tokens == 0
            stats = s.server.stats
            assert (stats.cancelled, stats.completed, stats.running) == (1, 0, 0)
            if stream:  # the stream had started: its first chunk went out
                assert sent[0]["status"] == 200
            # the server is free again: a normal request still answers
            engine.seconds_per_token = 0.0
            assert (await s.client.post("/v1/chat/completions", json=chat())).status_code == 200

    run(go)


# edges: jsonable, startup errors ---------------------------------------------------------


def test_jsonable_writes_infinities_as_null_and_tuples_as_lists() -> None:
    assert jsonable({"a": (1, float("-inf")), 2: {float("nan")}}) == {"a": [1, None], "2": [None]}


def test_serve_refuses_bad_recipes_and_settings_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: {kind: scripted}\nstrategy: {name: self_consistensy}\n")
    good = tmp_path / "good.yaml"
    good.write_text("engine: {kind: scripted}\nstrategy: {name: self_consistency}\n")
    other = tmp_path / "sub"
    other.mkdir()
    (other / "good.yaml").write_text(good.read_text())
    monkeypatch.delenv("BW_TEST_KEY", raising=False)
    cases = [
        ([str(bad)], "self_consistensy"),
        ([str(tmp_path / "missing.yaml")], "cannot read recipe"),
        ([str(good), str(other / "good.yaml")], "already taken"),
        ([str(good), "--api-key-env", "BW_TEST_KEY"], "BW_TEST_KEY"),
        ([str(good), "--max-concurrency", "0"], "--max-concurrency"),
        ([str(good), "--max-tokens", "8"], "above the server's --max-tokens"),
    ]
    for args, words in cases:
        assert main(["serve", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_bind_refuses_a_port_in_use_in_one_line() -> None:
    from branchwise.core.errors import BranchwiseError

    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(BranchwiseError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port).close()
    finally:
        sock.close()


def test_problem_ids_come_from_the_prompt_so_seeds_reproduce() -> None:
    # two requests with the same conversation are the same problem to the search
    async def go() -> None:
        async with served() as s:
            for _ in range(2):
                await s.client.post("/v1/chat/completions", json=chat(seed=1))
            first, second = (r.request_id.split(":") for r in s.engine.requests)
            assert first[0] != second[0] and first[1:] == second[1:]
            assert isinstance(Problem(id=first[1], question="q"), Problem)

    run(go)


def test_branchwise_serve_runs_the_command_end_to_end(tmp_path: Path) -> None:
    """The real command in a subprocess: uvicorn on 127.0.0.1, the openai client, Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import openai

    solutions = Path(__file__).resolve().parents[2] / "examples/testbed/data/eval.jsonl"
    recipe = tmp_path / "scripted_sc.yaml"
    recipe.write_text(
        f"engine: {{kind: scripted, error_rate: 0.2, solutions: {solutions}}}\n"
        "strategy: {name: self_consistency, n: 5}\n"
        "sampling: {max_tokens: 160}\n"  # one token per character on the scripted engine
        'step_delimiter: "\\n\\n"\n'
        "answer: {method: boxed}\n"  # the testbed's solutions end in \\boxed{}
    )
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "BW_KEY": KEY, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "branchwise", "serve", str(recipe)]
    command += ["--port", str(port), "--api-key-env", "BW_KEY"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        assert [m.id for m in client.models.list()] == ["scripted_sc"]
        first = json.loads((solutions).read_text().splitlines()[0])
        messages: Any = [{"role": "user", "content": first["question"]}]
        reply = client.chat.completions.create(model="scripted_sc", messages=messages)
        assert reply.model_extra is not None
        assert reply.model_extra["branchwise"]["answer"] == first["answer"]
        chunks = list(
            client.chat.completions.create(model="scripted_sc", messages=messages, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reply.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "serving scripted_sc on" in err and "server stopped" in err
    assert "Traceback" not in err


def test_openai_usage_counts_what_llm_scorers_spent() -> None:
    from branchwise.orchestrator.server.responses import openai_usage

    usage = {"prompt_tokens": 40, "cached_prompt_tokens": 10, "generated_tokens": 30,
             "scorer_prompt_tokens": 200, "scorer_cached_prompt_tokens": 5,
             "scorer_generated_tokens": 60, "thinking_tokens": 3}  # fmt: skip
    found = openai_usage(usage)
    assert (found["prompt_tokens"], found["completion_tokens"], found["total_tokens"]) == (
        240,
        90,
        330,
    )
    assert found["prompt_tokens_details"] == {"cached_tokens": 15}
    assert openai_usage({"prompt_tokens": 4, "generated_tokens": 2})["total_tokens"] == 6

"""The strategy server on a reasoning model (scripted): reasoning_content beside content,
streamed as reasoning deltas, thinking budgets per request within the caps, reasoning tokens
in usage; read through the official openai client (in process, over the ASGI app)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from branchwise.orchestrator.server.settings import ServerLimits
from tests.unit.test_server import KEY, PROBLEMS, chat, recipe_data, run, served

QUESTION = [{"role": "user", "content": PROBLEMS[0].question}]


def thinking_data(**extra: Any) -> dict[str, Any]:
    return recipe_data(
        engine={"kind": "scripted", "error_rate": 0.3, "thinking": {}},
        strategy={"name": "self_consistency", "n": 3},
        sampling={"temperature": 1.0, "max_tokens": 400},
        answer={"method": "answer_line"},
        reasoning={},
        **extra,
    )


def client_for(app: Any) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return openai.AsyncOpenAI(
        base_url="http://test/v1", api_key=KEY, http_client=http, max_retries=0
    )


def test_reasoning_content_is_the_thinking_and_content_the_answer_after_it() -> None:
    async def go() -> None:
        async with served(thinking_data(), api_key=KEY) as s:
            client = client_for(s.app)
            reply = await client.chat.completions.create(model="sc", messages=QUESTION, seed=1)  # type: ignore[arg-type]
            message = reply.choices[0].message
            thinking = (message.model_extra or {})["reasoning_content"]
            assert "Check step 1" in thinking
            assert "<think>" not in thinking and "</think>" not in thinking
            content = message.content or ""
            assert "Check step" not in content and "</think>" not in content
            facts = (reply.model_extra or {})["branchwise"]
            assert f"Answer: {facts['answer']}" in content
            usage = reply.usage
            assert usage is not None and usage.completion_tokens_details is not None
            reasoning = usage.completion_tokens_details.reasoning_tokens
            assert reasoning == facts["usage"]["thinking_tokens"] > 0
            assert reasoning < usage.completion_tokens

    run(go)


def test_streamed_reasoning_arrives_as_reasoning_deltas_before_the_content() -> None:
    async def go() -> None:
        async with served(thinking_data(), api_key=KEY) as s:
            client = client_for(s.app)
            whole = await client.chat.completions.create(model="sc", messages=QUESTION, seed=2)  # type: ignore[arg-type]
            stream = await client.chat.completions.create(
                model="sc",
                messages=QUESTION,  # type: ignore[arg-type]
                seed=2,
                stream=True,
                stream_options={"include_usage": True},
            )
            kinds, thinking, content, usage = [], "", "", None
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                piece = (delta.model_extra or {}).get("reasoning_content")
                if piece:
                    kinds.append("reasoning")
                    thinking += piece
                if delta.content:
                    kinds.append("content")
                    content += delta.content
            message = whole.choices[0].message
            assert kinds == ["reasoning", "content"]
            assert thinking == (message.model_extra or {})["reasoning_content"]
            assert content == message.content
            assert usage is not None and usage.completion_tokens_details is not None
            assert usage.completion_tokens_details.reasoning_tokens > 0

    run(go)


def test_max_thinking_tokens_per_request_forces_the_end_tag() -> None:
    async def go() -> None:
        async with served(thinking_data(), api_key=KEY) as s:
            client = client_for(s.app)
            reply = await client.chat.completions.create(
                model="sc",
                messages=QUESTION,  # type: ignore[arg-type]
                seed=1,
                extra_body={"max_thinking_tokens": 40},
            )
            facts = (reply.model_extra or {})["branchwise"]
            assert facts["budget"]["max_thinking_tokens"] == 40
            # three paths, each cut at 40 thinking tokens (the end tag is forced, not sampled)
            assert facts["usage"]["thinking_tokens"] == 3 * 40
            thinking = (reply.choices[0].message.model_extra or {})["reasoning_content"]
            assert len(thinking) == 40 - len("<think>")
            assert facts["answer"] is not None

    run(go)


@pytest.mark.parametrize(
    ("data", "body", "param"),
    [
        (None, {"max_thinking_tokens": 10}, "max_thinking_tokens"),  # not a thinking model
        ("thinking", {"max_thinking_tokens": 100}, "budget.max_thinking_tokens"),  # over cap
        ("thinking", {"min_thinking_tokens": 0}, "budget.min_thinking_tokens"),
        (
            "thinking",
            {"max_thinking_tokens": 10, "budget": {"max_thinking_tokens": 10}},
            "max_thinking_tokens",
        ),
    ],
)
def test_bad_thinking_budgets_are_400s_naming_the_field(
    data: str | None, body: dict[str, Any], param: str
) -> None:
    async def go() -> None:
        recipe = thinking_data() if data else None
        async with served(recipe, limits=ServerLimits(max_thinking_tokens=64)) as s:
            response = await s.client.post("/v1/chat/completions", json=chat(**body))
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == param

    run(go)

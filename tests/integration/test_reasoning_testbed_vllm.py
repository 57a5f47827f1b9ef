"""The reasoning testbed served through vLLM with its reasoning format (issue 23, target 6).

The model's chat template opens the thinking, ``</think>`` is one added token that decodes
as text, so a thinking cap forces it by id, budget forcing takes the model's own one off the
path, the answer is read after it, and the strategy server returns the thinking as
``reasoning_content`` beside the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.prompting import ChatMessage
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.server.app import StrategyServer, create_app
from branchwise.orchestrator.server.catalog import ModelCatalog
from branchwise.orchestrator.server.settings import ServerLimits
from tests.integration.conftest import REPO, EngineLoop, policy_config

pytestmark = pytest.mark.vllm
MODEL = REPO / "examples" / "testbed" / "models" / "reasoning"
RECIPE = REPO / "examples" / "recipes" / "reasoning_budget_forcing.yaml"
VAL = REPO / "examples" / "testbed" / "data" / "val.jsonl"
END = "</think>"


@pytest.fixture(scope="module")
def reasoning_engine(engine_loop: EngineLoop) -> Iterator[VLLMEngine]:
    if not (MODEL / "config.json").exists():
        pytest.fail(f"reasoning testbed missing at {MODEL}; run train_reasoning.py")
    engine = VLLMEngine(policy_config(model=str(MODEL), max_model_len=512))
    engine_loop.run(engine.start())
    yield engine
    engine_loop.run(engine.close())


def recipe_data() -> dict[str, Any]:
    """The shipped recipe without its dataset (the tests pick their problems)."""
    data: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    del data["dataset"]
    return data


def solve(
    loop: EngineLoop, engine: VLLMEngine, strategy: dict[str, Any], budget: dict[str, Any]
) -> list[ProblemResult]:
    data = {**recipe_data(), "strategy": strategy, "budget": budget}
    recipe = parse_recipe(data, base_dir=RECIPE.parent)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(load_problems(VAL, limit=4))

    return loop.run(go())


def test_the_template_opens_the_thinking_and_the_tags_are_single_tokens(
    engine_loop: EngineLoop, reasoning_engine: VLLMEngine
) -> None:
    [end] = engine_loop.run(reasoning_engine.tokenize(END))
    [start] = engine_loop.run(reasoning_engine.tokenize("<think>"))
    assert (start, end) == (492, 493)
    prompt = engine_loop.run(
        reasoning_engine.tokenize_chat([ChatMessage(role="user", content="Ann has 3 pens.")])
    )
    assert prompt.text.endswith("<|im_start|>assistant\n<think>\n")
    assert prompt.token_ids[-2:] == (start, *engine_loop.run(reasoning_engine.tokenize("\n")))


def test_a_thinking_cap_forces_the_end_tag_and_the_answer_follows(
    engine_loop: EngineLoop, reasoning_engine: VLLMEngine
) -> None:
    forced_ids = engine_loop.run(reasoning_engine.tokenize("\n</think>\n\n"))
    results = solve(
        engine_loop, reasoning_engine, {"name": "self_consistency", "n": 2},
        {"max_thinking_tokens": 12},
    )  # fmt: skip
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None, result.error
        for terminal in graph.terminals():
            path = graph.path(terminal.id)[1:]
            assert [n.token_ids for n in path if n.forced] == [forced_ids]
            # the forced text's tokens up to the end tag think; the blank line after answers
            end_at = forced_ids.index(493) + 1
            assert sum(n.thinking_tokens for n in path) == 12 + end_at
            after = graph.solution_text(terminal.id).split(END, 1)[1]
            assert "\\boxed{" in after  # the model answers after a forced end
            assert terminal.answer is not None and terminal.answer in after


def test_budget_forcing_thinks_on_after_wait_and_answers_after_the_tag(
    engine_loop: EngineLoop, reasoning_engine: VLLMEngine
) -> None:
    results = solve(engine_loop, reasoning_engine, {"name": "budget_forcing", "waits": 1}, {})
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None, result.error
        waits = [n for n in graph.nodes() if n.forced and n.text == "Wait"]
        assert len(waits) == result.detail["waits"] == 1
        assert result.usage["thinking_tokens"] > 0
        if result.answer is None:  # a redo that ran to max_tokens: no answer, and it says so
            continue
        thinking, answer = graph.solution_text(result.node_id or "").split(END, 1)
        assert "Wait" in thinking and "\\boxed{" in answer
    assert any(r.answer is not None for r in results)


def test_the_strategy_server_returns_the_thinking_as_reasoning_content(
    engine_loop: EngineLoop, reasoning_engine: VLLMEngine
) -> None:
    recipe = parse_recipe(recipe_data(), base_dir=RECIPE.parent)
    question = load_problems(VAL, limit=1)[0].question

    async def go() -> dict[str, Any]:
        async with ModelCatalog({"bf": recipe}, engines={"bf": reasoning_engine}) as catalog:
            app = create_app(StrategyServer(catalog, ServerLimits(), None))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                request = {"model": "bf", "messages": [{"role": "user", "content": question}]}
                reply = await client.post("/v1/chat/completions", json=request, timeout=300)
                assert reply.status_code == 200, reply.text
                body: dict[str, Any] = reply.json()
                return body

    body = engine_loop.run(go())
    message = body["choices"][0]["message"]
    assert " = " in message["reasoning_content"] and END not in message["reasoning_content"]
    assert "\\boxed{" in message["content"] and END not in message["content"]
    details = body["usage"]["completion_tokens_details"]
    assert 0 < details["reasoning_tokens"] < body["usage"]["completion_tokens"]

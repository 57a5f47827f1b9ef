"""Thinking budgets on vLLM with a real byte-level BPE (the testbed policy, no weights fetched).

The testbed policy is not a reasoning model, so its calculation steps play the thinking and
"The answer" (two whole tokens after a blank line) the end tag: the answer is read after it,
the cap forces it by token ids, and budget forcing takes the model's own one off the path.
"""

from __future__ import annotations

from typing import Any

import pytest

from branchwise.core.graph import SearchGraph
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, REPO, TESTBED, EngineLoop

pytestmark = pytest.mark.vllm
EVAL = REPO / "examples" / "testbed" / "data" / "eval.jsonl"
END = "The answer"


def solve(
    loop: EngineLoop, engine: VLLMEngine, strategy: dict[str, Any], budget: dict[str, Any]
) -> list[ProblemResult]:
    recipe = parse_recipe(
        {
            **TESTBED,
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": strategy,
            "reasoning": {"start": "<think>", "end": END, "continuation": "\n\nWait"},
            "sampling": {"temperature": 1.0, "max_tokens": 96},
            "budget": budget,
            "seed": 5,
        }
    )

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(load_problems(EVAL, limit=3))

    return loop.run(go())


def check_tokens(result: ProblemResult) -> SearchGraph:
    graph = result.graph
    assert graph is not None and result.error is None, result.error
    in_graph = sum(n.generated_tokens for n in graph.nodes() if n.parent_id)
    assert in_graph == result.usage["generated_tokens"]
    thinking = sum(n.thinking_tokens for n in graph.nodes() if n.parent_id and not n.forced)
    assert thinking == result.usage["thinking_tokens"] > 0
    return graph


def test_the_cap_forces_the_end_tag_by_token_ids_and_the_answer_follows(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    end_ids = engine_loop.run(vllm_engine.tokenize(END))
    for result in solve(
        engine_loop, vllm_engine, {"name": "self_consistency", "n": 4}, {"max_thinking_tokens": 10}
    ):
        graph = check_tokens(result)
        for terminal in graph.terminals():
            path = graph.path(terminal.id)[1:]
            forced = [n for n in path if n.forced]
            assert [n.token_ids for n in forced] == [end_ids]
            assert sum(n.thinking_tokens for n in path) == 10 + len(end_ids)
            after = graph.solution_text(terminal.id).split(END, 1)[1]
            assert terminal.answer is None or terminal.answer in after


def test_budget_forcing_replaces_the_models_end_by_the_continuation(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    for result in solve(engine_loop, vllm_engine, {"name": "budget_forcing", "waits": 1}, {}):
        graph = check_tokens(result)
        rejected = [n for n in graph.nodes() if graph.state(n.id).status == "pruned"]
        waits = [n for n in graph.nodes() if n.forced and "Wait" in n.text]
        assert len(waits) == result.detail["waits"] <= 1
        assert all(n.text.startswith(END) for n in rejected)
        assert len(rejected) >= len(waits)
        answer = graph.node(result.node_id or "")
        assert graph.solution_text(answer.id).count(END) >= 1

"""Step-level strategies on real vLLM with the testbed's exact step checker as the PRM.

Small sizes: five eval problems, a few dozen steps each. The assertions are about the
machinery (graph sanity, answers parse, budget kept, nothing left running), not accuracy:
the testbed policy may be barely trained.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, TESTBED, EngineLoop

pytestmark = pytest.mark.vllm
EVAL = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "data" / "eval.jsonl"
TOKEN_BUDGET = 1200
SCORERS = [
    {"kind": "arithmetic_steps", "name": "prm"},
    {"kind": "reference_answer", "name": "oracle"},
]


def _problems(count: int = 5) -> list[Problem]:
    return load_problems(EVAL, limit=count)


def _solve(loop: EngineLoop, engine: VLLMEngine, strategy: dict[str, Any]) -> list[ProblemResult]:
    recipe = parse_recipe(
        {
            **TESTBED,
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": strategy,
            "scorers": SCORERS,
            "sampling": {"temperature": 1.0, "max_tokens": 96},
            "budget": {"max_generated_tokens": TOKEN_BUDGET},
            "seed": 5,
        }
    )

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(_problems())

    results = loop.run(go())
    for result in results:
        _check_graph(result)
    assert engine.running_requests() == 0  # vLLM's own count: nothing left running
    answered = [r.answer for r in results if r.answer is not None]
    assert answered, "no strategy run produced a parsable answer"
    assert all(re.fullmatch(r"-?\d+", a) for a in answered), answered
    return results


def _check_graph(result: ProblemResult) -> None:
    assert result.error is None, result.error
    graph = result.graph
    assert graph is not None and graph.is_acyclic()
    assert result.usage["generated_tokens"] <= TOKEN_BUDGET
    in_graph = sum(n.generated_tokens for n in graph.nodes() if n.parent_id)
    assert in_graph == result.usage["generated_tokens"]
    for node in graph.nodes():
        if node.parent_id is not None:
            assert graph.node(node.parent_id).depth + 1 == node.depth
        if node.terminal:
            assert graph.children(node.id) == []  # a finished path is never extended
    # anytime: an answer exactly when the graph holds a finished, answered path (unless a
    # weighted vote found no positive weight, which it declines to crown and says so)
    answered = [n for n in graph.terminals() if n.answer is not None]
    declined = bool(result.detail.get("no_positive_weight"))
    assert (result.answer is not None) == (bool(answered) and not declined)
    assert (result.answer is None) == (result.node_id is None)
    picked = graph.node(result.node_id or graph.root.id)
    assert picked.answer == result.answer
    assert picked.terminal or result.node_id is None
    assert graph.state(picked.id).status != "pruned"


def test_beam_search(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> None:
    strategy = {
        "name": "beam_search",
        "beam_width": 2,
        "expansions": 3,
        "scorer": "prm",
        "max_depth": 8,
        "step_max_tokens": 24,
    }
    for result in _solve(engine_loop, vllm_engine, strategy):
        assert result.graph is not None
        assert result.detail.get("depth", 0) >= 1 or result.detail.get("anytime")


def test_dvts(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> None:
    strategy = {
        "name": "dvts",
        "subtrees": 3,
        "expansions": 2,
        "scorer": "prm",
        "max_depth": 8,
        "step_max_tokens": 24,
    }
    for result in _solve(engine_loop, vllm_engine, strategy):
        assert result.graph is not None and len(result.graph.children("r")) == 6


def test_mcts(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> None:
    strategy = {
        "name": "mcts",
        "iterations": 10,
        "expansion_width": 2,
        "scorer": "prm",
        "policy": "puct",
        "rollout": True,
        "verifier": "oracle",
        "parallel": 2,
        "max_depth": 8,
        "step_max_tokens": 24,
        "rollout_max_tokens": 64,
    }
    for result in _solve(engine_loop, vllm_engine, strategy):
        graph = result.graph
        assert graph is not None
        steps = [n for n in graph.nodes() if n.parent_id == "r"]
        assert steps and all(n.token_logprobs for n in steps)  # PUCT priors need logprobs


def test_ab_mcts(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> None:
    strategy = {
        "name": "ab_mcts",
        "iterations": 10,
        "scorer": "prm",
        "verifier": "oracle",
        "parallel": 2,
        "max_depth": 8,
        "step_max_tokens": 24,
        "rollout_max_tokens": 64,
    }
    for result in _solve(engine_loop, vllm_engine, strategy):
        stopped = bool(result.detail.get("anytime") or result.detail.get("budget_exhausted"))
        assert stopped or result.detail["generated"] == 10  # every iteration ran
        # a stop is a real one: the token budget is spent but for what two rollouts return
        assert not stopped or result.usage["generated_tokens"] >= TOKEN_BUDGET - 2 * 64


def test_particle_filter(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> None:
    strategy = {
        "name": "particle_filter",
        "particles": 6,
        "scorer": "prm",
        "schedule": "adaptive",
        "ess_threshold": 0.9,
        "max_depth": 8,
        "step_max_tokens": 24,
    }
    for result in _solve(engine_loop, vllm_engine, strategy):
        graph = result.graph
        assert graph is not None
        pruned = [n for n in graph.nodes() if graph.state(n.id).status == "pruned"]
        assert all(graph.children(n.id) == [] for n in pruned)  # a dropped particle stops


def test_a_star(engine_loop: EngineLoop, vllm_engine: VLLMEngine) -> None:
    strategy = {
        "name": "a_star",
        "expansions": 3,
        "scorer": "prm",
        "verifier": "oracle",
        "max_expansions": 12,
        "max_depth": 8,
        "step_max_tokens": 24,
    }
    for result in _solve(engine_loop, vllm_engine, strategy):
        expanded = result.detail.get("expanded", [])
        assert len(expanded) <= 12
        accepted = bool(result.detail.get("accepted"))
        assert not accepted or result.correct  # the oracle verifier accepted it
        # the answer is the accepted path's, or the lowest-f finished path's when none was
        assert result.detail.get("accepted") in (True, False) or result.detail.get("anytime")

"""Contracts every registered strategy keeps on the scripted engine.

Budget respected (with an anytime answer), acyclic graph, same seed same graph, and no
request left running once the search returns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.problem import Problem
from orchestrator.engines.scripted import ScriptedEngine
from orchestrator.recipe import parse_recipe
from orchestrator.results import ProblemResult
from orchestrator.runner import Orchestrator
from strategies.base import STRATEGIES
from tests.conftest import make_problem, teach
from tests.unit.strategy_configs import CONTRACT_SCORERS, STRATEGY_CONFIGS

NAMES = sorted(STRATEGY_CONFIGS)


def _run(
    name: str, problems: list[Problem], *, seed: int = 0, budget: dict[str, Any] | None = None
) -> tuple[list[ProblemResult], ScriptedEngine]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": STRATEGY_CONFIGS[name],
            "scorers": CONTRACT_SCORERS,
            "sampling": {"temperature": 1.0, "max_tokens": 48},
            "budget": budget or {},
            "seed": seed,
        }
    )
    engine = ScriptedEngine(error_rate=0.25)
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go()), engine


def test_every_registered_strategy_has_a_contract_config() -> None:
    assert set(STRATEGIES.names()) <= set(STRATEGY_CONFIGS)


@pytest.mark.parametrize("name", NAMES)
def test_graph_is_acyclic_and_answer_comes_from_it(name: str) -> None:
    problems = [make_problem(i) for i in range(4)]
    results, _ = _run(name, problems)
    for result in results:
        assert result.error is None, result.error
        assert result.graph is not None and result.graph.is_acyclic()
        if result.node_id is not None:
            assert result.graph.node(result.node_id).answer == result.answer


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_graph_and_answer(name: str) -> None:
    problems = [make_problem(i) for i in range(3)]
    first, _ = _run(name, problems, seed=7)
    second, _ = _run(name, problems, seed=7)
    for a, b in zip(first, second, strict=True):
        assert a.answer == b.answer
        assert a.graph is not None and b.graph is not None
        assert a.graph.to_dict() == b.graph.to_dict()


@pytest.mark.parametrize("name", NAMES)
def test_budget_is_respected_with_an_anytime_answer(name: str) -> None:
    problems = [make_problem(i) for i in range(3)]
    results, _ = _run(name, problems, budget={"max_generated_tokens": 60})
    for result in results:
        assert result.error is None, result.error
        assert result.usage["generated_tokens"] <= 60


@pytest.mark.parametrize("name", NAMES)
def test_tokens_are_accounted(name: str) -> None:
    problems = [make_problem(i) for i in range(3)]
    results, engine = _run(name, problems)
    generated = sum(int(r.usage["generated_tokens"]) for r in results)
    assert generated == engine.generated_tokens
    for result in results:
        assert result.graph is not None
        # Forced nodes (ctx.extend) hold tokens nobody sampled; aborted nodes hold the
        # partial tokens generated before the abort, which were paid for.
        in_graph = sum(n.generated_tokens for n in result.graph.nodes() if n.parent_id)
        assert in_graph == result.usage["generated_tokens"]
        for node in result.graph.nodes():
            if node.finish_reason == "abort":
                assert result.graph.state(node.id).status in ("aborted", "failed")
                assert not node.terminal and node.answer is None

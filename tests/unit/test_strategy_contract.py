"""Contracts every registered strategy keeps on the scripted engine.

A well-formed search graph (a tree whose edges, depths and token prefixes agree with the node
payloads), the budget kept with an anytime answer at its end, same seed same graph, every
token accounted for, and no engine request left running once the search returns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import networkx as nx
import pytest

from branchwise.core.graph import ROOT_ID, SearchGraph
from branchwise.core.problem import Problem
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.lending import PoolSeat
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.strategies.base import STRATEGIES
from tests.conftest import make_problem, teach
from tests.unit.strategy_configs import CONTRACT_SCORERS, STRATEGY_CONFIGS, recipe_extras

NAMES = sorted(STRATEGY_CONFIGS)
# Budgets that end a search early: by tokens, and by scorer calls (which most strategies
# meet inside ctx.score, so the runner asks the strategy for its anytime answer).
ENDING_BUDGETS = {
    "tokens": ("generated_tokens", {"max_generated_tokens": 60}),
    "scorer_calls": ("scorer_calls", {"max_scorer_calls": 3}),
}


def _run(
    name: str,
    problems: list[Problem],
    *,
    seed: int = 0,
    budget: dict[str, Any] | None = None,
    latency: float = 0.0,
    named_out: dict[str, Any] | None = None,
) -> tuple[list[ProblemResult], ScriptedEngine, int]:
    """Results, the engine, and how many engine requests a search left running
    (``named_out``: filled with the recipe's named engines, if any)."""
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": STRATEGY_CONFIGS[name],
            **recipe_extras(STRATEGY_CONFIGS[name]),
            "scorers": CONTRACT_SCORERS,
            "sampling": {"temperature": 1.0, "max_tokens": 48},
            "budget": budget or {},
            "seed": seed,
        }
    )
    engine = ScriptedEngine(error_rate=0.25, seconds_per_token=latency)
    teach(engine, problems)
    named = {n: c.build(recipe.base_dir) for n, c in recipe.engines.items()}  # e.g. rsd's target
    for other in named.values():
        teach(other, problems)
    if named_out is not None:
        named_out.update(named)

    left_running: list[str] = []

    class Checked(Orchestrator):
        async def solve(self, problem: Problem, *, seat: PoolSeat | None = None) -> ProblemResult:
            result = await super().solve(problem, seat=seat)
            # nothing awaited since the search returned: whatever runs now, it left running
            left_running.extend(
                rid for rid, r in engine.in_flight.items() if r.affinity == problem.id
            )
            return result

    async def go() -> list[ProblemResult]:
        async with Checked(recipe, engine=engine, engines=named) as orchestrator:
            return await orchestrator.run(problems)

    results = asyncio.run(go())
    return results, engine, len(left_running)


def assert_well_formed(graph: SearchGraph) -> None:
    """The graph is a tree rooted at the prompt whose edges agree with the payloads."""
    g = graph.graph
    assert nx.is_arborescence(g), "not a tree: a node with two parents, a cycle or an orphan"
    root = graph.root
    assert root.id == ROOT_ID and root.parent_id is None and root.depth == 0
    assert g.in_degree(ROOT_ID) == 0
    for node in graph.nodes():
        if node.parent_id is None:
            continue
        parent = graph.node(node.parent_id)
        assert list(g.predecessors(node.id)) == [parent.id], node.id
        assert node.depth == parent.depth + 1, node.id
        assert node.id.rsplit(".", 1)[0] == parent.id, node.id
        # a child's prompt is its parent's exact tokens plus its own
        full = graph.full_token_ids(node.id)
        assert full == graph.full_token_ids(parent.id) + node.token_ids
        assert not graph.node(parent.id).terminal, f"{node.id} extends a finished path"


def test_every_registered_strategy_has_a_contract_config() -> None:
    names = set(STRATEGIES.names())
    assert "best_of_n" in names and "entropy_branching" in names  # the built-ins are there
    assert names <= {config["name"] for config in STRATEGY_CONFIGS.values()}


@pytest.mark.parametrize("name", NAMES)
def test_graph_is_a_well_formed_tree_and_answer_comes_from_it(name: str) -> None:
    problems = [make_problem(i) for i in range(4)]
    results, _, running = _run(name, problems)
    assert running == 0
    for result in results:
        assert result.error is None, result.error
        assert result.graph is not None
        assert_well_formed(result.graph)
        assert result.answer is not None and result.node_id is not None
        assert result.graph.node(result.node_id).answer == result.answer


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_graph_and_answer(name: str) -> None:
    problems = [make_problem(i) for i in range(3)]
    first, _, _ = _run(name, problems, seed=7)
    second, _, _ = _run(name, problems, seed=7)
    for a, b in zip(first, second, strict=True):
        assert a.answer == b.answer
        assert a.graph is not None and b.graph is not None
        assert a.graph.to_dict() == b.graph.to_dict()


@pytest.mark.parametrize("ending", sorted(ENDING_BUDGETS))
@pytest.mark.parametrize("name", NAMES)
def test_budget_is_respected_with_an_anytime_answer(name: str, ending: str) -> None:
    field, budget = ENDING_BUDGETS[ending]
    limit = next(iter(budget.values()))
    problems = [make_problem(i) for i in range(3)]
    results, _, running = _run(name, problems, budget=budget)
    assert running == 0
    for result in results:
        assert result.error is None, result.error
        assert result.usage[field] <= limit
        assert result.graph is not None
        assert_well_formed(result.graph)
        # Anytime: when the budget ends the search, the answer is the best the graph holds,
        # so there is one exactly when the graph holds a finished, answered path (a weighted
        # vote that found no positive weight declines to crown one, and says so).
        answered = [n for n in result.graph.terminals() if n.answer is not None]
        declined = bool(result.detail.get("no_positive_weight"))
        assert (result.answer is not None) == (bool(answered) and not declined), answered
        assert result.answer is None or (
            result.node_id is not None and result.graph.node(result.node_id).answer == result.answer
        )


def test_the_budgets_above_end_searches_and_reach_the_anytime_answer() -> None:
    # What makes the test above bite: the token budget cuts searches that hold answers, and
    # the scorer budget ends some inside ctx.score, where the runner takes the anytime answer.
    cut, anytime = set(), set()
    for name in NAMES:
        results, _, _ = _run(
            name, [make_problem(i) for i in range(3)], budget={"max_scorer_calls": 3}
        )
        anytime |= {name for r in results if r.detail.get("anytime") and r.answer is not None}
        results, _, _ = _run(
            name, [make_problem(i) for i in range(3)], budget={"max_generated_tokens": 60}
        )
        cut |= {name for r in results if r.usage["generated_tokens"] == 60 and r.answer is not None}
    assert "best_of_n" in anytime
    assert {"ab_mcts", "adaptive_self_consistency"} <= cut


@pytest.mark.parametrize("name", NAMES)
def test_tokens_are_accounted_and_no_request_is_left_running(name: str) -> None:
    # Eight problems (first_finish gets samples of different lengths) with some latency: a
    # request a search forgot to abort is then still running when the search returns.
    problems = [make_problem(i) for i in range(8)]
    named: dict[str, Any] = {}
    results, engine, running = _run(name, problems, latency=2e-4, named_out=named)
    assert running == 0, f"{running} engine requests still running after the searches"
    generated = sum(int(r.usage["generated_tokens"]) for r in results)
    assert generated == engine.generated_tokens + sum(e.generated_tokens for e in named.values())
    for engine_name, other in named.items():  # counted apart, per engine
        key = f"engines.{engine_name}.generated_tokens"
        assert sum(int(r.usage[key]) for r in results) == other.generated_tokens
    for result in results:
        assert result.graph is not None
        # Forced nodes (ctx.extend) hold tokens nobody sampled; aborted nodes hold the
        # partial tokens generated before the abort, which were paid for.
        in_graph = sum(n.generated_tokens for n in result.graph.nodes() if n.parent_id)
        assert in_graph == result.usage["generated_tokens"]
        aborted = [n for n in result.graph.nodes() if n.finish_reason == "abort"]
        assert all(result.graph.state(n.id).status in ("aborted", "failed") for n in aborted)
        assert all(not n.terminal and n.answer is None for n in aborted)

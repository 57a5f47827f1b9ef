"""MCTS: the tree policy picks what its formula picks; the search obeys it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from branchwise.strategies.tree_policy import (
    ChildStats,
    puct_score,
    select_child,
    sibling_priors,
    uct_score,
)
from tests.conftest import make_problem
from tests.unit.step_helpers import mean_tokens, run_strategy


def test_uct_score_is_mean_plus_exploration_bonus() -> None:
    child = ChildStats("r.0", visits=4, value_sum=3.0)
    assert uct_score(child, 20, 1.5) == pytest.approx(0.75 + 1.5 * math.sqrt(math.log(20) / 4))
    assert uct_score(ChildStats("r.1", 0, 0.0), 20, 1.0) == math.inf


def test_puct_score_uses_the_prior() -> None:
    child = ChildStats("r.0", visits=3, value_sum=1.5, prior=0.2)
    assert puct_score(child, 16, 2.0) == pytest.approx(0.5 + 2.0 * 0.2 * 4 / 4)
    unvisited = ChildStats("r.1", visits=0, value_sum=0.0, prior=0.5)
    assert puct_score(unvisited, 16, 1.0) == pytest.approx(0.5 * 4)


def test_uct_picks_the_child_the_formula_picks() -> None:
    # high mean, many visits vs. lower mean, few visits: exploration decides
    exploit = ChildStats("r.0", visits=20, value_sum=16.0)  # Q = 0.8
    explore = ChildStats("r.1", visits=2, value_sum=1.0)  # Q = 0.5
    parent = 22.0
    for c in (0.1, 0.5, 1.0, 2.0):
        expected = max((exploit, explore), key=lambda ch: uct_score(ch, parent, c)).node_id
        assert select_child([exploit, explore], parent, c, "uct") == expected
    assert select_child([exploit, explore], parent, 0.1, "uct") == "r.0"
    assert select_child([exploit, explore], parent, 2.0, "uct") == "r.1"


def test_puct_prefers_the_likelier_step_among_equals() -> None:
    a = ChildStats("r.0", visits=1, value_sum=0.5, prior=0.3)
    b = ChildStats("r.1", visits=1, value_sum=0.5, prior=0.7)
    assert select_child([a, b], 2, 1.0, "puct") == "r.1"
    assert select_child([a, b], 2, 0.0, "puct") == "r.0"  # tie on Q: earlier id


def test_ties_go_to_the_earlier_node_id() -> None:
    children = [ChildStats(i, 2, 1.0) for i in ("r.10", "r.9", "r.2")]
    assert select_child(children, 6, 1.0, "uct") == "r.2"


def test_sibling_priors_normalise_step_probabilities() -> None:
    priors = sibling_priors([math.log(0.2), math.log(0.6), math.log(0.2)])
    assert priors == pytest.approx([0.2, 0.6, 0.2])
    assert sibling_priors([-1.0, None]) == [0.5, 0.5]
    assert sum(sibling_priors([-500.0, -501.0])) == pytest.approx(1.0)


def _mcts(**extra: Any) -> dict[str, Any]:
    return {"name": "mcts", "iterations": 12, "expansion_width": 3, "scorer": "prm", **extra}


def _expanded_parents(engine: Any, problem_id: str) -> list[str]:
    return [
        r.request_id.split(":")[-1].split("x")[0].rsplit(".", 1)[0]
        for r in engine.requests
        if f":{problem_id}:" in r.request_id
    ]


def test_without_widening_each_leaf_expands_once_and_terminals_never() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, engine = run_strategy(
        _mcts(parallel=3, progressive_widening=False), problems, error_rate=0.4
    )
    for result in results:
        assert result.graph is not None and result.error is None
        mine = _expanded_parents(engine, result.problem_id)
        assert len(mine) == len(set(mine))  # virtual loss + dedupe: no leaf expanded twice
        for node in result.graph.nodes():
            if node.terminal:
                assert result.graph.children(node.id) == []


def test_tokens_grow_with_iterations() -> None:
    # Old MCTS expanded each node once and then re-selected finished leaves for free:
    # 16 -> 128 iterations moved tokens by a few percent. Every simulation now generates.
    problems = [make_problem(i, steps=4) for i in range(6)]
    tokens = {}
    for iterations in (16, 128):
        results, _ = run_strategy(
            _mcts(iterations=iterations, expansion_width=2, parallel=4, max_depth=8),
            problems,
            error_rate=0.3,
        )
        tokens[iterations] = mean_tokens(results)
        for result in results:
            detail = result.detail
            assert detail["simulations"] == iterations or detail["tree_exhausted"]
    assert tokens[128] > 4 * tokens[16]


def test_progressive_widening_re_expands_visited_nodes() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, engine = run_strategy(_mcts(iterations=40, expansion_width=2), problems)
    for result in results:
        parents = _expanded_parents(engine, result.problem_id)
        assert parents.count("r") >= 3  # the root widened twice or more
        assert result.detail["root_children"] > 2
        for node in result.graph.nodes() if result.graph else []:
            if node.terminal:
                assert result.graph is not None and result.graph.children(node.id) == []


def test_search_stops_when_the_tree_is_exhausted() -> None:
    # error_rate 0: each step has one possible text, so the tree is one path, drawn dry
    problems = [make_problem(i, steps=2) for i in range(2)]
    results, engine = run_strategy(_mcts(iterations=200, expansion_width=2), problems, error_rate=0)
    for result in results:
        assert result.detail["tree_exhausted"]
        assert result.detail["simulations"] < 20
        assert result.correct
    assert len(engine.requests) < 40


def test_puct_asks_for_logprobs_and_uct_does_not() -> None:
    problems = [make_problem(0, steps=3)]
    _, engine = run_strategy(_mcts(policy="puct"), problems)
    assert all(r.sampling.logprobs == 0 for r in engine.requests)
    _, engine = run_strategy(_mcts(), problems)
    assert all(r.sampling.logprobs is None for r in engine.requests)


def test_rollouts_give_every_new_step_a_finished_path_judged_by_the_verifier() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, engine = run_strategy(
        _mcts(rollout=True, verifier="oracle", iterations=6), problems, error_rate=0.4
    )
    rollouts = [r for r in engine.requests if r.sampling.stop == ()]
    steps = 0
    for result in results:
        graph = result.graph
        assert graph is not None
        for node in graph.nodes():
            if node.parent_id is None or node.terminal or graph.state(node.id).status == "pruned":
                continue  # pruned: a merged duplicate, never part of the tree
            steps += 1
            ends = [c for c in graph.children(node.id) if c.terminal]
            assert ends, node.id
            assert any(graph.score(c.id, "oracle") is not None for c in ends)
        assert result.answer is not None
        assert result.node_id is not None and graph.score(result.node_id, "oracle") is not None
    assert len(rollouts) == steps and all(r.n == 1 for r in rollouts)


def test_most_visited_follows_visits_to_a_finished_path() -> None:
    problems = [make_problem(i, steps=2) for i in range(3)]
    results, _ = run_strategy(
        _mcts(final="most_visited", iterations=30, exploration=0.3), problems, error_rate=0.3
    )
    for result in results:
        assert result.answer is not None and result.node_id is not None
        assert result.graph is not None and result.graph.node(result.node_id).terminal

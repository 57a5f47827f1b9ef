"""Beam search keeps the top B by aggregated score; finished beams stay finished."""

from __future__ import annotations

from typing import Any

import pytest

from branchwise.core.graph import Node, SearchGraph
from branchwise.core.values import Aggregation, StepAggregation
from branchwise.strategies.step_search import ranked
from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy

NOISY = [{"kind": "noisy_prm", "name": "prm", "noise": 0.3}]


def _value(graph: SearchGraph, node: Node, how: Aggregation) -> float:
    score = graph.score(node.id, "prm")
    assert score is not None and score.ok
    value = StepAggregation(method=how)(score.step_values)
    assert value is not None
    return value


def _scorer_value(graph: SearchGraph, node: Node) -> float:
    """The scorer's own value: what a strategy that declares no aggregation ranks by."""
    score = graph.score(node.id, "prm")
    assert score is not None and score.value is not None
    return score.value


def _beam(**extra: Any) -> dict[str, Any]:
    return {"name": "beam_search", "beam_width": 3, "expansions": 3, "scorer": "prm", **extra}


@pytest.mark.parametrize("how", ["min", "product", "last", "mean"])
def test_each_depth_keeps_the_top_b_open_paths_by_aggregated_score(how: Aggregation) -> None:
    problems = [make_problem(i, steps=4) for i in range(4)]
    results, _ = run_strategy(_beam(aggregation=how), problems, scorers=NOISY, error_rate=0.4)
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        for depth in range(1, 7):
            candidates = [n for n in graph.nodes() if n.depth == depth and not n.terminal]
            if not candidates:
                break
            kept = [n for n in candidates if graph.state(n.id).status != "pruned"]
            dropped = [n for n in candidates if graph.state(n.id).status == "pruned"]
            assert len(kept) == min(3, len(candidates))  # the slots are refilled
            if kept and dropped:
                worst_kept = min(_value(graph, n, how) for n in kept)
                best_dropped = max(_value(graph, n, how) for n in dropped)
                assert worst_kept >= best_dropped
        for node in graph.nodes():  # only kept beams were expanded
            if graph.children(node.id):
                assert graph.state(node.id).status != "pruned"


def test_every_finished_path_is_kept_and_the_answer_is_chosen_among_all() -> None:
    # Old beam search made finished paths compete for the B slots and pruned the losers, so
    # every run ended with at most B answers for the final rule.
    problems = [make_problem(i, steps=4) for i in range(6)]
    results, _ = run_strategy(
        _beam(beam_width=2, final="weighted_vote"), problems, scorers=NOISY, error_rate=0.4
    )
    for result in results:
        graph = result.graph
        assert graph is not None
        ends = [n for n in graph.nodes() if n.terminal and graph.score(n.id, "prm") is not None]
        assert all(graph.state(n.id).status == "terminal" for n in ends)  # none pruned
        assert result.detail["finished"] == len(ends)
        voters = sum(1 for n in ends if n.answer is not None)
        assert sum(result.detail["votes"].values()) == pytest.approx(
            sum(_scorer_value(graph, n) for n in ends if n.answer is not None)
        )
        assert voters >= 1
    assert max(r.detail["finished"] for r in results) > 2 * 2


def test_ranking_breaks_ties_by_node_id() -> None:
    nodes = [Node(id=i, parent_id="r", depth=1, token_ids=(), text="") for i in ("r.10", "r.2")]
    values = {"r.10": 0.5, "r.2": 0.5}
    assert [n.id for n in ranked(nodes, lambda n: values[n.id])] == ["r.2", "r.10"]
    values["r.10"] = 0.6
    assert [n.id for n in ranked(nodes, lambda n: values[n.id])] == ["r.10", "r.2"]


def test_finished_beams_stay_finished_and_answer_is_the_best_finished() -> None:
    problems = [make_problem(i, steps=3) for i in range(6)]
    results, _ = run_strategy(_beam(), problems, scorers=NOISY, error_rate=0.4)
    for result in results:
        graph = result.graph
        assert graph is not None
        for node in graph.nodes():
            if node.terminal:
                assert graph.children(node.id) == []  # never expanded again
        finished = graph.terminals()  # terminal and not pruned: the finished beams
        assert finished and result.node_id in {n.id for n in finished}
        best = max(_value(graph, n, "min") for n in finished)
        assert result.node_id is not None
        assert _value(graph, graph.node(result.node_id), "min") == best


def test_weighted_vote_final_rule_counts_every_finished_beam() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(_beam(final="weighted_vote"), problems, scorers=NOISY)
    for result in results:
        assert result.graph is not None
        votes = result.detail["votes"]
        answers = {n.answer for n in result.graph.terminals()}
        assert set(votes) == answers - {None}
        assert result.answer == max(votes, key=votes.get)


def test_each_depth_samples_m_steps_per_open_beam_in_one_request_each() -> None:
    problems = [make_problem(0, steps=3)]
    _, engine = run_strategy(_beam(), problems, scorers=NOISY)
    assert engine.requests and all(r.n == 3 for r in engine.requests)
    assert all(r.sampling.stop == ("\n",) for r in engine.requests)


def test_budget_stops_the_search_with_an_answer_from_finished_beams() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(_beam(), problems, budget={"max_generated_tokens": 150})
    for result in results:
        assert result.error is None
        assert result.usage["generated_tokens"] <= 150

"""A*: the frontier pops in f-order, expansion follows it, the first accepted goal ends it."""

from __future__ import annotations

from typing import Any

from branchwise.core.graph import Node, SearchGraph, path_key
from branchwise.orchestrator.results import ProblemResult
from branchwise.strategies.a_star import Frontier
from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy

NOISY: list[dict[str, Any]] = [
    {"kind": "noisy_prm", "name": "prm", "noise": 0.3},
    {"kind": "reference_answer", "name": "oracle"},
]


def test_frontier_pops_lowest_f_first_with_ties_by_id() -> None:
    frontier = Frontier()
    for node_id, f in [("r.3", 0.5), ("r.10", 0.2), ("r.2", 0.2), ("r.0.1", 0.9), ("r.1", 0.3)]:
        frontier.push(node_id, f)
    popped = [frontier.pop()[0] for _ in range(len(frontier))]
    assert popped == ["r.2", "r.10", "r.1", "r.3", "r.0.1"]


def _a_star(**extra: Any) -> dict[str, Any]:
    return {"name": "a_star", "expansions": 3, "scorer": "prm", "verifier": "oracle", **extra}


def _f(graph: SearchGraph, node: Node, g: str, g_scale: float) -> float:
    if node.parent_id is None:
        return 0.0
    score = graph.score(node.id, "prm")
    assert score is not None and score.value is not None  # no aggregation declared: its value
    g_value = -node.cum_logprob if g == "neg_logprob" else float(node.depth)
    return g_value * g_scale + (1.0 - score.value)


def _check_f_order(result: ProblemResult, g: str, g_scale: float, penalty: float) -> None:
    """Replay the frontier: every expanded node had the lowest (f, id) when it was popped."""
    graph = result.graph
    assert graph is not None
    expanded: list[str] = result.detail["expanded"]
    assert expanded[0] == "r"
    keys: dict[str, tuple[float, tuple[int, ...]]] = {"r": (0.0, ())}
    times: dict[str, int] = {}
    seen: set[str] = {"r"}
    for node_id in expanded:
        key = keys.pop(node_id)
        for other_id, other_key in keys.items():
            if other_key < key:
                # only a goal popped earlier (and rejected) may have come first
                other = graph.node(other_id)
                verdict = graph.score(other_id, "oracle")
                assert other.terminal and verdict is not None and verdict.value == 0.0
        times[node_id] = times.get(node_id, 0) + 1
        f = _f(graph, graph.node(node_id), g, g_scale)
        keys[node_id] = (f + penalty * times[node_id], path_key(node_id))
        for child in graph.children(node_id):
            drawn_now = path_key(child.id)[-1] // 3 == times[node_id] - 1  # 3 ids per expansion
            if drawn_now and child.id not in seen and graph.score(child.id, "prm") is not None:
                seen.add(child.id)
                keys[child.id] = (_f(graph, child, g, g_scale), path_key(child.id))
        for other_id in [i for i in keys if graph.score(i, "oracle") is not None]:
            del keys[other_id]  # goals are judged when popped


def test_expansion_happens_in_f_order_with_logprob_cost() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(_a_star(), problems, scorers=NOISY, error_rate=0.5)
    for result in results:
        assert result.error is None
        assert len(result.detail["expanded"]) >= 3
        _check_f_order(result, "neg_logprob", 0.1, 0.5)


def test_expansion_happens_in_f_order_with_step_cost() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(
        _a_star(g="steps", g_scale=0.3, revisit_penalty=0.2),
        problems,
        scorers=NOISY,
        error_rate=0.5,
    )
    for result in results:
        _check_f_order(result, "steps", 0.3, 0.2)


def test_without_revisits_each_node_is_expanded_once() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(
        _a_star(revisit_penalty=None), problems, scorers=NOISY, error_rate=0.5
    )
    for result in results:
        expanded = result.detail["expanded"]
        assert len(expanded) == len(set(expanded))
        _check_f_order(result, "neg_logprob", 0.1, 1e9)


def test_stops_at_the_first_goal_the_verifier_accepts() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(_a_star(), problems, scorers=NOISY, error_rate=0.4)
    for result in results:
        graph = result.graph
        assert graph is not None
        assert result.detail["accepted"] is True and result.correct
        judged = [n for n in graph.nodes() if graph.score(n.id, "oracle") is not None]
        accepted = [n for n in judged if graph.score(n.id, "oracle").value == 1.0]  # type: ignore[union-attr]
        assert [n.id for n in accepted] == [result.node_id]  # nothing judged after it


def test_without_a_verifier_the_first_goal_popped_wins() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(
        {"name": "a_star", "expansions": 3, "scorer": "prm"}, problems, scorers=NOISY
    )
    for result in results:
        graph = result.graph
        assert graph is not None and result.node_id is not None
        goal = graph.node(result.node_id)
        assert goal.terminal and result.detail["accepted"] is True
        assert graph.children(goal.id) == []


def test_max_expansions_ends_with_the_lowest_f_unrejected_goal() -> None:
    problems = [make_problem(i, steps=4) for i in range(3)]
    results, _ = run_strategy(_a_star(max_expansions=2), problems, scorers=NOISY, error_rate=0.5)
    for result in results:
        assert len(result.detail["expanded"]) <= 2
        assert result.detail["accepted"] is False


def test_h_zero_ablation_is_uniform_cost_search_without_scorer_calls() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(
        _a_star(h_scale=0.0, g="steps", g_scale=1.0, revisit_penalty=None, max_expansions=12),
        problems,
        scorers=NOISY,
        error_rate=0.5,
    )
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        assert all(graph.score(n.id, "prm") is None for n in graph.nodes())  # no PRM at all
        verdicts = sum(graph.score(n.id, "oracle") is not None for n in graph.nodes())
        assert result.usage["scorer_calls"] == verdicts
        depths = [graph.node(n).depth for n in result.detail["expanded"]]
        assert depths == sorted(depths)  # g = depth, h = 0: breadth first
        keys = [(graph.node(n).depth, path_key(n)) for n in result.detail["expanded"]]
        assert keys == sorted(keys)  # equal f: earlier id first


def test_h_zero_with_logprob_cost_expands_the_likeliest_paths_first() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(
        _a_star(h_scale=0.0, revisit_penalty=None, max_expansions=10),
        problems,
        scorers=NOISY,
        error_rate=0.5,
    )
    for result in results:
        graph = result.graph
        assert graph is not None
        costs = [-graph.node(n).cum_logprob for n in result.detail["expanded"]]
        assert costs == sorted(costs)
        assert all(graph.score(n.id, "prm") is None for n in graph.nodes())

"""TreeBoN keeps N paths alive, pruning the worst partial paths early and branching the best."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_problem
from tests.unit.step_helpers import accuracy, mean_tokens, run_strategy

NOISY = [{"kind": "noisy_prm", "name": "prm", "noise": 0.3}]


def _treebon(**extra: Any) -> dict[str, Any]:
    base = {"name": "treebon", "n": 8, "branching": 2, "layers": 3, "scorer": "prm"}
    return {**base, "aggregation": "min", **extra}


def _min_step(graph: Any, node: Any) -> float:
    score = graph.score(node.id, "prm")
    assert score is not None
    return min(score.step_values)


def test_each_round_keeps_the_best_n_over_nc_partial_paths_and_prunes_the_rest() -> None:
    problems = [make_problem(i, steps=5) for i in range(6)]
    results, _ = run_strategy(_treebon(), problems, scorers=NOISY, max_tokens=160)
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        for depth in (1, 2, 3):  # the three pruning rounds
            layer = [n for n in graph.nodes() if n.depth == depth and not n.terminal]
            kept = [n for n in layer if graph.children(n.id)]
            pruned = [n for n in layer if graph.state(n.id).status == "pruned"]
            assert len(layer) == 8 and len(kept) == 4 and len(pruned) == 4
            assert all(len(graph.children(n.id)) == 2 for n in kept)  # N stays alive
            assert not any(graph.children(n.id) for n in pruned)  # pruned early, never grown
            kept_values = [_min_step(graph, n) for n in kept]
            assert min(kept_values) >= max(_min_step(graph, n) for n in pruned)
        # the last round's children are written to the end and judged best-of-N
        assert result.node_id is not None and graph.node(result.node_id).terminal


def test_treebon_beats_best_of_n_at_the_same_n_and_tokens() -> None:
    problems = [make_problem(i, steps=5) for i in range(30)]
    tree, _ = run_strategy(_treebon(), problems, scorers=NOISY, max_tokens=160)
    flat, _ = run_strategy(
        {"name": "best_of_n", "n": 8, "scorer": "prm", "aggregation": "min"},
        problems,
        scorers=NOISY,
        max_tokens=160,
    )
    assert mean_tokens(tree) <= 1.05 * mean_tokens(flat)
    assert accuracy(tree) > accuracy(flat) + 0.1

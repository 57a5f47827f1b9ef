"""DVTS: independent subtrees from the root, no barrier between them, a vote across them."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy


def _dvts(**extra: Any) -> dict[str, Any]:
    return {"name": "dvts", "subtrees": 3, "expansions": 2, "scorer": "prm", **extra}


def _subtree(node_id: str, expansions: int) -> int:
    return int(node_id.split(".")[1]) // expansions


def test_each_subtree_keeps_one_greedy_path_of_its_own() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(_dvts(), problems, error_rate=0.4)
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        assert len(graph.children("r")) == 3 * 2  # one request of n=M per subtree from the root
        for depth in range(1, 6):
            kept = [
                n
                for n in graph.nodes()
                if n.depth == depth and graph.state(n.id).status != "pruned"
            ]
            per_subtree = [_subtree(n.id, 2) for n in kept]
            assert all(per_subtree.count(s) <= 1 for s in per_subtree)  # beam width 1 each


def test_the_answer_is_a_weighted_vote_over_subtree_leaders() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(_dvts(), problems, error_rate=0.4)
    for result in results:
        assert result.detail["subtrees_finished"] == 3
        votes = result.detail["votes"]
        assert sum(1 for _ in votes) >= 1
        assert result.answer == max(votes, key=votes.get)


def test_subtrees_do_not_wait_for_each_other() -> None:
    # Subtree 0 (root children r.0, r.1) is scored slowly; the others must run ahead.
    scorers = [{"kind": "slow_prm", "name": "prm", "slow_under": ["r.0", "r.1"], "delay": 0.05}]
    problems = [make_problem(0, steps=4)]
    results, engine = run_strategy(_dvts(), problems, scorers=scorers, error_rate=0.0)
    assert results[0].error is None and results[0].correct
    parents = [r.request_id.split(":")[-1].split("x")[0].rsplit(".", 1)[0] for r in engine.requests]
    first_slow_deep = next(
        i for i, p in enumerate(parents) if p.count(".") >= 1 and _subtree(p, 2) == 0
    )
    fast_deep = [i for i, p in enumerate(parents) if p.count(".") >= 2 and _subtree(p, 2) != 0]
    # the fast subtrees reached depth 3 before the slow one asked for its second step
    assert fast_deep and min(fast_deep) < first_slow_deep

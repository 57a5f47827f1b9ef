"""phi-Decoding values each step by its foresight and prunes in width and depth."""

from __future__ import annotations

import random
from typing import Any

import pytest

from branchwise.strategies.phi_decoding import foresight_weights, sample_without_replacement
from tests.conftest import make_problem
from tests.unit.step_helpers import accuracy, mean_tokens, run_strategy


def _phi(**extra: Any) -> dict[str, Any]:
    return {"name": "phi_decoding", "beams": 2, "candidates": 4, **extra}


def test_value_adds_the_advantage_softmax_and_the_answer_cluster_share() -> None:
    w = foresight_weights([0.0, 0.0, -10.0], ["7", "7", "8"], temperature=1.0)
    assert w[0] == pytest.approx(0.5 + 2 / 5, abs=1e-4)  # cluster sizes 2, 2, 1 over 5
    assert w[2] == pytest.approx(0.0 + 1 / 5, abs=1e-4)
    assert foresight_weights([1.0, 0.0], [None, None], 1.0)[1] > 0  # no cluster: advantage only
    counts = [0, 0, 0]
    rng = random.Random(0)
    for _ in range(3000):
        for i in sample_without_replacement([6.0, 3.0, 1.0], 1, rng):
            counts[i] += 1
    assert counts[0] / 3000 == pytest.approx(0.6, abs=0.03)
    assert sample_without_replacement([0.0, 0.0, 1.0], 3, rng) == [0, 1, 2]


def test_width_pruning_spends_no_foresight_on_unlikely_steps() -> None:
    problems = [make_problem(i, steps=4) for i in range(6)]
    results, _ = run_strategy(_phi(agree_threshold=None), problems, error_rate=0.3, max_tokens=160)
    pruned_unlikely = 0
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        for node in graph.nodes():
            if node.depth == 0 or graph.node(str(node.parent_id)).depth != 0:
                continue
            siblings = graph.children(str(node.parent_id))
            means = [sum(s.token_logprobs) / len(s.token_logprobs) for s in siblings]
            mine = sum(node.token_logprobs) / len(node.token_logprobs)
            mean = sum(means) / len(means)
            spread = (sum((m - mean) ** 2 for m in means) / len(means)) ** 0.5
            if mine < mean - spread and not node.terminal:
                assert graph.children(node.id) == []  # no foresight rolled out
                assert graph.state(node.id).status == "pruned"
                pruned_unlikely += 1
    assert pruned_unlikely > 0


def test_depth_pruning_stops_once_the_foresights_agree() -> None:
    problems = [make_problem(i, steps=4) for i in range(6)]
    agreeing, _ = run_strategy(_phi(), problems, error_rate=0.05, max_tokens=160)
    stepping, _ = run_strategy(
        _phi(agree_threshold=None), problems, error_rate=0.05, max_tokens=160
    )
    assert all(r.detail["agreed"] and r.detail["depth"] <= 2 for r in agreeing)
    assert all(r.detail["depth"] == 5 and not r.detail["agreed"] for r in stepping)
    assert [r.answer for r in agreeing] == [r.answer for r in stepping]
    assert mean_tokens(agreeing) < mean_tokens(stepping) / 2


def test_foresight_beats_self_consistency_at_more_tokens() -> None:
    problems = [make_problem(i, steps=5) for i in range(30)]
    phi, _ = run_strategy(_phi(), problems, error_rate=0.3, max_tokens=160)
    vote, _ = run_strategy(
        {"name": "self_consistency", "n": 32}, problems, error_rate=0.3, max_tokens=160
    )
    assert mean_tokens(phi) < mean_tokens(vote)
    assert accuracy(phi) > accuracy(vote) + 0.2
    # the foresight value alone (no width pruning) still picks better steps than chance
    valued, _ = run_strategy(_phi(width_sigma=None), problems, error_rate=0.3, max_tokens=160)
    assert accuracy(valued) > accuracy(vote) + 0.1

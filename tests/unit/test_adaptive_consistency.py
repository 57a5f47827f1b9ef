"""Adaptive self-consistency: rounds, the two stopping rules, and what it saves."""

from __future__ import annotations

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.strategies.adaptive_consistency import leader_probability
from tests.conftest import make_problem
from tests.unit.sampling_support import generated_in_graph, run_strategy


def test_leader_probability_is_the_exact_beta_posterior_tail() -> None:
    assert leader_probability(0, 0) == 0.5
    assert leader_probability(2, 0) == 7 / 8
    assert leader_probability(4, 0) == 31 / 32
    for a, b in [(3, 1), (5, 4), (7, 2)]:
        # P(p_a > p_b) + P(p_b > p_a) = 1: the posterior is continuous.
        assert leader_probability(a, b) + leader_probability(b, a) == pytest.approx(1.0)
        assert leader_probability(a + 1, b) > leader_probability(a, b)


def test_an_easy_problem_stops_early_and_reports_the_saving() -> None:
    engine = ScriptedEngine(error_rate=0.0)
    strategy = {"name": "adaptive_self_consistency", "max_samples": 32, "confidence": 0.95}
    [result] = run_strategy(strategy, [make_problem(0)], engine)
    # 2 agreeing votes give P = 7/8, 3 give 15/16, 4 give 31/32 >= 0.95: checked after each.
    assert [r.n for r in engine.requests] == [2, 1, 1]
    assert result.correct
    assert result.detail["samples"] == 4 and result.detail["saved_samples"] == 28
    assert result.detail["stop_reason"] == "beta" and result.detail["rounds"] == 3


def test_the_rule_is_checked_after_every_sample_so_max_4_can_stop_early() -> None:
    # Doubling rounds checked only at 2 and 4 samples: at max 4 it could never stop early.
    engine = ScriptedEngine(error_rate=0.0)
    strategy = {"name": "adaptive_self_consistency", "max_samples": 4, "confidence": 0.9}
    [result] = run_strategy(strategy, [make_problem(0)], engine)
    assert result.detail["samples"] == 3 and result.detail["saved_samples"] == 1
    assert [r.n for r in engine.requests] == [2, 1]
    every_two = ScriptedEngine(error_rate=0.0)
    run_strategy({**strategy, "max_samples": 8, "round_size": 2}, [make_problem(0)], every_two)
    assert [r.n for r in every_two.requests] == [2, 2]


def test_supermajority_rule_stops_at_the_first_decided_round() -> None:
    engine = ScriptedEngine(error_rate=0.0)
    strategy = {"name": "adaptive_self_consistency", "max_samples": 16, "stopping": "supermajority"}
    [result] = run_strategy(strategy, [make_problem(1)], engine)
    assert result.detail["samples"] == 2 and result.detail["stop_reason"] == "supermajority"


def test_hard_problems_use_more_samples_than_easy_ones() -> None:
    problems = [make_problem(i, steps=5) for i in range(12)]
    strategy = {"name": "adaptive_self_consistency", "max_samples": 32}
    easy = run_strategy(strategy, problems, ScriptedEngine(error_rate=0.02))
    hard = run_strategy(strategy, problems, ScriptedEngine(error_rate=0.3))
    used_easy = sum(r.detail["samples"] for r in easy)
    used_hard = sum(r.detail["samples"] for r in hard)
    assert used_hard > used_easy
    assert any(r.detail["stop_reason"] == "max_samples" for r in hard)
    for result in easy + hard:
        assert result.detail["samples"] + result.detail["saved_samples"] == 32
        assert result.usage["generated_tokens"] == generated_in_graph(result)


def test_round_sizes_double_or_stay_fixed_and_never_pass_max_samples() -> None:
    problems = [make_problem(0)]
    doubling = ScriptedEngine(error_rate=1.0)  # every path wrong, answers disagree
    strategy = {"name": "adaptive_self_consistency", "max_samples": 11, "growth": "double"}
    run_strategy(strategy, problems, doubling)
    assert [r.n for r in doubling.requests] == [2, 2, 4, 3]
    fixed = ScriptedEngine(error_rate=1.0)
    strategy = {
        "name": "adaptive_self_consistency",
        "max_samples": 8,
        "initial": 3,
        "growth": "fixed",
        "round_size": 2,
    }
    run_strategy(strategy, problems, fixed)
    sizes = [r.n for r in fixed.requests]
    assert sizes == [3, 2, 2, 1][: len(sizes)]  # the last round shrinks to fit max_samples


def test_budget_stop_keeps_the_votes_so_far() -> None:
    engine = ScriptedEngine(error_rate=1.0)
    strategy = {"name": "adaptive_self_consistency", "max_samples": 64}
    [result] = run_strategy(
        strategy, [make_problem(2)], engine, budget={"max_generated_tokens": 200}
    )
    assert result.detail["stop_reason"] == "budget"
    assert result.usage["generated_tokens"] <= 200
    assert result.detail["samples"] < 64


def test_invalid_configs_name_the_problem() -> None:
    with pytest.raises(RecipeError, match="initial"):
        run_strategy(
            {"name": "adaptive_self_consistency", "max_samples": 2, "initial": 4},
            [make_problem(0)],
            ScriptedEngine(),
        )
    with pytest.raises(RecipeError, match="round_size"):
        run_strategy(
            {"name": "adaptive_self_consistency", "growth": "double", "round_size": 4},
            [make_problem(0)],
            ScriptedEngine(),
        )

"""The pure rules the reference comparisons (tests/equivalence) pinned down, and their options."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from branchwise.strategies.ab_mcts_m_posterior import (
    GroupPosterior,
    HalfNormalPrior,
    Pruning,
    choose_option,
    is_prunable,
)
from branchwise.strategies.beam_refill import refill_beam
from branchwise.strategies.deepconf_rules import count_until_consensus, stop_threshold
from branchwise.strategies.particle_weights import answer_pool, next_log_weight
from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy


def test_subtrees_prune_at_four_scores_three_quarters_equal() -> None:
    on = Pruning()
    assert is_prunable([1, 1, 1, 0], on) and not is_prunable([1, 1, 1], on)
    assert not is_prunable([1, 1, 0, 0], on)
    assert is_prunable([0.501, 0.499, 0.5, 0.2], on)  # equal to two decimals
    assert not is_prunable([1, 1, 1, 1], Pruning(enabled=False))


def test_the_mixed_model_posterior_follows_the_data_and_pools_small_groups() -> None:
    rng = random.Random(0)
    posterior = GroupPosterior([[0.9, 0.85, 0.95, 0.9], [0.2]], HalfNormalPrior())
    draws = [posterior.draw(rng) for _ in range(3000)]
    first = statistics.fmean(d[3][0] for d in draws)
    second = statistics.fmean(d[3][1] for d in draws)
    assert first == pytest.approx(0.9, abs=0.03)
    assert 0.2 < second < 0.5  # one score, pulled toward the population
    mu = statistics.fmean(d[2] for d in draws)
    assert second < mu < first


def test_a_pruned_best_child_passes_to_the_next_child_not_to_gen() -> None:
    # child 0 holds many equal high scores (pruned); GEN is rarely chosen over child 1
    groups = [[0.9] * 6, [0.6]]
    rng = random.Random(1)
    picks = [choose_option(groups, [True, True], HalfNormalPrior(), Pruning(), "mean", rng)]
    picks += [
        choose_option(groups, [True, True], HalfNormalPrior(), Pruning(), "predictive", rng)
        for _ in range(300)
    ]
    assert 0 not in picks and picks.count(1) > picks.count(None)
    assert choose_option(groups, [False, False], HalfNormalPrior(), Pruning(), "mean", rng) is None


def test_adaptive_weights_add_the_incremental_potential() -> None:
    assert next_log_weight(5.0, 2.0, 1.5, carry=None) == 2.0
    assert next_log_weight(5.0, 2.0, 1.5, carry="incremental") == pytest.approx(5.5)
    assert next_log_weight(5.0, 2.0, 1.5, carry="product") == pytest.approx(7.0)
    # with a min aggregation a path value never rises: the increments telescope to the latest
    values = [math.log(4.0), math.log(2.0), math.log(2.0)]
    weight, previous = 0.0, 0.0
    for potential in values:
        weight, previous = (
            next_log_weight(weight, potential, previous, carry="incremental"),
            (potential),
        )
    assert weight == pytest.approx(values[-1])


def test_the_gibbs_answer_pool_counts_each_reference_once() -> None:
    sweeps = [(["a", "b", "c"], None), (["d", "e"], "b"), (["f", "g"], "e")]
    assert answer_pool(sweeps, "last") == ["e", "f", "g"]
    assert answer_pool(sweeps, "all") == ["a", "b", "c", "d", "e", "f", "g"]
    assert answer_pool([], "last") == []


def test_a_short_beam_is_refilled_best_first() -> None:
    assert refill_beam(["a", "b"], 5) == ["a", "b", "a", "b", "a"]
    assert refill_beam(["a", "b", "c"], 2) == ["a", "b"]
    assert refill_beam([], 4) == []


@pytest.mark.parametrize("refill", [True, False])
def test_beam_search_samples_b_times_m_steps_per_depth_when_refilled(refill: bool) -> None:
    # merged duplicates leave fewer distinct open paths than slots: refill keeps B*M samples
    strategy = {
        "name": "beam_search",
        "beam_width": 4,
        "expansions": 2,
        "scorer": "prm",
        "merge_duplicates": True,
        "refill": refill,
    }
    problems = [make_problem(i, steps=4) for i in range(4)]
    _, engine = run_strategy(strategy, problems, error_rate=0.1)
    per_depth: dict[tuple[str, int], int] = {}
    for request in engine.requests:
        _, problem_id, child = request.request_id.rsplit(":", 2)
        depth = child.split("x")[0].count(".") - 1  # the parent's depth
        per_depth[(problem_id, depth)] = per_depth.get((problem_id, depth), 0) + request.n
    later = [n for (_, depth), n in per_depth.items() if depth >= 1]
    if refill:
        assert later and all(n == 8 for n in later)
    else:
        assert any(n < 8 for n in later)


def test_the_deepconf_threshold_is_the_reference_percentile_or_the_ceiling_share() -> None:
    lows = [3.0, 1.0, 2.0, 4.0, 0.5]
    assert stop_threshold(lows, 90, "percentile") == pytest.approx(np.percentile(lows, 10))
    assert stop_threshold(lows, 90, "ceiling") == 0.5  # ceil(4.5) = 5 of 5 pass
    with pytest.raises(ValueError, match="no warm-up"):
        stop_threshold([], 90, "percentile")


def test_consensus_is_checked_after_each_trace_in_wave_order() -> None:
    def share(voters: list[str]) -> float:
        return max(voters.count(v) for v in voters) / len(voters)

    voters, used = count_until_consensus(["7", "7"], ["7", None, "7", "8"], share, 0.75)
    assert voters == ["7", "7", "7"] and used == 1
    voters, used = count_until_consensus(["7", "8"], ["9", None], share, 0.75)
    assert voters == ["7", "8", "9"] and used == 2

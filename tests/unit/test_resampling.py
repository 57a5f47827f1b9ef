"""Resampling follows the weights; ESS measures their spread."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from branchwise.strategies.resampling import (
    effective_sample_size,
    multinomial_resample,
    softmax,
    systematic_resample,
)

WEIGHTS = [0.5, 0.3, 0.15, 0.05, 0.0]


def test_ess_is_n_for_uniform_and_one_for_degenerate() -> None:
    assert effective_sample_size([1.0] * 8) == pytest.approx(8.0)
    assert effective_sample_size([0.0, 3.0, 0.0]) == pytest.approx(1.0)
    assert effective_sample_size([2.0, 2.0, 0.0, 0.0]) == pytest.approx(2.0)
    # scale-free: unnormalised weights give the same ESS
    assert effective_sample_size([1, 2, 3]) == pytest.approx(effective_sample_size([2, 4, 6]))
    assert effective_sample_size([0.5, 0.3, 0.2]) == pytest.approx(1 / (0.25 + 0.09 + 0.04))


def test_multinomial_proportions_follow_weights() -> None:
    rng = random.Random(1234)
    draws = 20_000
    counts = Counter(multinomial_resample(WEIGHTS, draws, rng))
    for index, weight in enumerate(WEIGHTS):
        share = counts[index] / draws
        sd = math.sqrt(weight * (1 - weight) / draws)
        assert abs(share - weight) <= 4 * sd + 1e-12, (index, share, weight)
    assert counts[4] == 0  # zero weight is never drawn


def test_systematic_counts_are_floor_or_ceil_of_expected() -> None:
    rng = random.Random(99)
    for _ in range(200):
        count = rng.randint(1, 40)
        indices = systematic_resample(WEIGHTS, count, rng)
        assert len(indices) == count
        assert indices == sorted(indices)
        counts = Counter(indices)
        for index, weight in enumerate(WEIGHTS):
            expected = weight * count
            assert math.floor(expected) <= counts[index] <= math.ceil(expected)


def test_systematic_average_proportions_follow_weights() -> None:
    rng = random.Random(7)
    totals: Counter[int] = Counter()
    rounds, count = 2_000, 7
    for _ in range(rounds):
        totals.update(systematic_resample(WEIGHTS, count, rng))
    for index, weight in enumerate(WEIGHTS):
        assert totals[index] / (rounds * count) == pytest.approx(weight, abs=0.01)


def test_resamplers_are_deterministic_for_a_seed() -> None:
    for draw in (multinomial_resample, systematic_resample):
        first = draw(WEIGHTS, 10, random.Random(5))
        assert first == draw(WEIGHTS, 10, random.Random(5))


@pytest.mark.parametrize("bad", [[], [0.0, 0.0], [1.0, -0.5], [1.0, math.nan]])
def test_bad_weights_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        systematic_resample(bad, 3, random.Random(0))


def test_softmax_is_stable_and_normalised() -> None:
    probs = softmax([1000.0, 1000.0, 999.0])
    assert sum(probs) == pytest.approx(1.0)
    assert probs[0] == pytest.approx(probs[1])
    assert probs[2] == pytest.approx(probs[0] / math.e)

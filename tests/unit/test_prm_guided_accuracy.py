"""With the oracle PRM, every step-level search beats majority vote at comparable tokens.

Scripted problems of 4 steps plus an answer line, each line wrong with probability 0.3:
a whole sample is right only ~17% of the time and wrong answers scatter, so majority vote
over 16 samples is often wrong; a search that checks every step should almost never be.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_problem
from tests.unit.step_helpers import accuracy, mean_tokens, run_strategy

PROBLEMS = [make_problem(i, steps=4) for i in range(24)]
ERROR_RATE = 0.3

GUIDED: dict[str, dict[str, Any]] = {
    "beam_search": {"name": "beam_search", "beam_width": 4, "expansions": 4, "scorer": "prm"},
    "dvts": {"name": "dvts", "subtrees": 4, "expansions": 4, "scorer": "prm"},
    "particle_filter": {"name": "particle_filter", "particles": 16, "scorer": "prm"},
    "mcts": {
        "name": "mcts",
        "iterations": 18,  # every simulation generates: 18 x 4 steps ~ 16 samples' tokens
        "expansion_width": 4,
        "exploration": 0.5,
        "parallel": 4,
        "scorer": "prm",
    },
    "ab_mcts": {"name": "ab_mcts", "iterations": 16, "parallel": 4, "scorer": "prm"},
    "a_star": {"name": "a_star", "expansions": 4, "scorer": "prm", "max_expansions": 16},
}


@pytest.fixture(scope="module")
def majority() -> tuple[float, float]:
    results, _ = run_strategy(
        {"name": "self_consistency", "n": 16}, PROBLEMS, error_rate=ERROR_RATE
    )
    return accuracy(results), mean_tokens(results)


@pytest.mark.parametrize("name", sorted(GUIDED))
def test_oracle_prm_guided_search_beats_majority_vote(
    name: str, majority: tuple[float, float]
) -> None:
    vote_accuracy, vote_tokens = majority
    results, _ = run_strategy(GUIDED[name], PROBLEMS, error_rate=ERROR_RATE)
    assert all(r.error is None for r in results)
    assert mean_tokens(results) <= 1.25 * vote_tokens
    assert accuracy(results) >= vote_accuracy + 0.4, (accuracy(results), vote_accuracy)

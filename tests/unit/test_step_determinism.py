"""Step-level searches do not depend on completion order, and concurrent requests share a
node budget without overshooting it."""

from __future__ import annotations

import pytest

from core.errors import BudgetExhausted
from orchestrator.budget import Budget, BudgetTracker
from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy
from tests.unit.strategy_configs import CONTRACT_SCORERS, STRATEGY_CONFIGS

STEP_STRATEGIES = ["a_star", "ab_mcts", "beam_search", "dvts", "mcts", "particle_filter"]


@pytest.mark.parametrize("name", STEP_STRATEGIES)
def test_latency_does_not_change_the_graph(name: str) -> None:
    # With per-token latency, short steps complete first; the graph must not notice.
    problems = [make_problem(i, steps=3) for i in range(2)]
    config = STRATEGY_CONFIGS[name]
    instant, _ = run_strategy(config, problems, scorers=CONTRACT_SCORERS, error_rate=0.3)
    slow, _ = run_strategy(
        config, problems, scorers=CONTRACT_SCORERS, error_rate=0.3, seconds_per_token=2e-4
    )
    for a, b in zip(instant, slow, strict=True):
        assert a.graph is not None and b.graph is not None
        assert a.answer == b.answer and a.graph.to_dict() == b.graph.to_dict()


@pytest.mark.parametrize("name", STEP_STRATEGIES)
def test_concurrent_requests_respect_the_node_budget(name: str) -> None:
    problems = [make_problem(i, steps=3) for i in range(2)]
    results, _ = run_strategy(
        STRATEGY_CONFIGS[name], problems, scorers=CONTRACT_SCORERS, budget={"max_nodes": 7}
    )
    for result in results:
        assert result.error is None
        assert result.usage["nodes"] <= 7


def test_reserved_nodes_count_against_the_node_budget() -> None:
    tracker = BudgetTracker(Budget(max_nodes=4))
    tracker.check_request(n=3, max_tokens=8, new_nodes=3)
    tracker.reserve(24, nodes=3)  # in flight, not yet settled
    with pytest.raises(BudgetExhausted):
        tracker.check_request(n=2, max_tokens=8, new_nodes=2)
    tracker.settle(24, generated=6, prompt=5, cached=0, nodes=3, reserved_nodes=3)
    tracker.check_request(n=1, max_tokens=8, new_nodes=1)
    assert tracker.usage.nodes == 3


# first_finish is a race by design: which path wins, and how far the others got, is timing.
@pytest.mark.parametrize("name", sorted(set(STRATEGY_CONFIGS) - {"first_finish"}))
@pytest.mark.parametrize("tokens", [45, 150])
def test_a_binding_token_budget_does_not_depend_on_latency(name: str, tokens: int) -> None:
    # Near the budget's end a request is cut short or refused; which one must not depend on
    # which request in flight happened to return its unused reservation first.
    problems = [make_problem(i, steps=3) for i in range(2)]
    config = STRATEGY_CONFIGS[name]
    budget = {"max_generated_tokens": tokens}
    runs = [
        run_strategy(
            config,
            problems,
            scorers=CONTRACT_SCORERS,
            error_rate=0.3,
            seconds_per_token=latency,
            budget=budget,
        )[0]
        for latency in (0.0, 2e-4)
    ]
    for a, b in zip(*runs, strict=True):
        assert a.error is None and b.error is None
        assert a.graph is not None and b.graph is not None
        assert a.usage["generated_tokens"] <= tokens
        assert a.answer == b.answer and a.graph.to_dict() == b.graph.to_dict()

"""Step-level searches do not depend on completion order, and concurrent requests share a
node budget without overshooting it."""

from __future__ import annotations

import pytest

from branchwise.core.errors import BudgetExhausted
from branchwise.orchestrator.ledger import Budget, Ledger
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
    tracker = Ledger(Budget(max_nodes=4))
    tracker.check_request(n=3, max_tokens=8, new_nodes=3)
    held = tracker.hold(per_sample=8, tokens=24, nodes=3)  # in flight, not yet settled
    with pytest.raises(BudgetExhausted):
        tracker.check_request(n=2, max_tokens=8, new_nodes=2)
    held.settle(generated=6, prompt=5, cached=0, nodes=3)
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


@pytest.mark.parametrize("tokens", [150, 200])
def test_ab_mcts_at_a_tight_budget_cuts_the_same_at_every_latency(tokens: int) -> None:
    # AB-MCTS runs two decisions at once; near the budget's end the one whose request would
    # be cut waits for the other's unused reservation (orchestrator.admission). A plain
    # check-and-reserve cuts by whichever returned first, and the graphs differ by latency.
    problems = [make_problem(i, steps=3) for i in range(2)]
    runs = [
        run_strategy(
            STRATEGY_CONFIGS["ab_mcts"],
            problems,
            scorers=CONTRACT_SCORERS,
            error_rate=0.3,
            seconds_per_token=latency,
            budget={"max_generated_tokens": tokens},
        )[0]
        for latency in (0.0, 3e-4, 5e-4, 1e-3)
    ]
    baseline = [(r.answer, r.graph.to_dict() if r.graph else None) for r in runs[0]]
    for result in runs[0]:  # the budget binds: spent to the last token
        assert result.detail["budget_exhausted"] and result.usage["generated_tokens"] == tokens
    for run in runs[1:]:
        assert [(r.answer, r.graph.to_dict() if r.graph else None) for r in run] == baseline

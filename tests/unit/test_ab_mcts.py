"""AB-MCTS: conjugate posteriors, the wider/deeper Thompson decision, and score backup."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from branchwise.core.graph import Node, SearchGraph
from branchwise.strategies.ab_mcts import (
    ABMCTS,
    ABMCTSConfig,
    NodeAggregation,
    NodeBelief,
    choose_action,
)
from branchwise.strategies.ab_mcts_m import MixedModelPolicy
from branchwise.strategies.mixed_model import MixedPrior, draw_group_means
from branchwise.strategies.thompson import BetaPosterior, GaussianPosterior
from tests.conftest import make_problem
from tests.unit.step_helpers import TreePort, run_strategy


def test_beta_posterior_counts_fractional_successes() -> None:
    post = BetaPosterior(0.5, 0.5)
    for s in (1.0, 0.25, 0.0):
        post.observe(s)
    assert (post.a, post.b) == pytest.approx((1.75, 2.25))
    with pytest.raises(ValueError):
        post.observe(1.5)


def test_gaussian_posterior_matches_the_closed_form() -> None:
    data = [0.2, 0.9, 0.4, 0.7]
    post = GaussianPosterior(m=0.1, kappa=2.0, nu=3.0, tau2=0.2)
    for x in data:
        post.observe(x)
    n, mean = len(data), statistics.fmean(data)
    ss = sum((x - mean) ** 2 for x in data)
    kappa, nu = 2.0 + n, 3.0 + n
    m = (2.0 * 0.1 + n * mean) / kappa
    tau2 = (3.0 * 0.2 + ss + n * 2.0 / kappa * (0.1 - mean) ** 2) / nu
    assert post.params() == pytest.approx((m, kappa, nu, tau2))


def test_gaussian_draws_centre_on_the_posterior_mean() -> None:
    post = GaussianPosterior()
    for _ in range(200):
        post.observe(0.8)
    rng = random.Random(0)
    draws = [post.sample(rng) for _ in range(2000)]
    assert statistics.fmean(draws) == pytest.approx(0.8 * 200 / 201, abs=0.01)


def _belief(gen: float, cont: float, children: dict[str, float]) -> NodeBelief:
    # strong Beta posteriors centred on the given rates
    def strong(p: float) -> BetaPosterior:
        return BetaPosterior(1 + 2000 * p, 1 + 2000 * (1 - p))

    return NodeBelief(strong(gen), strong(cont), {k: strong(v) for k, v in children.items()})


def test_choose_action_goes_wider_or_deeper_by_the_posteriors() -> None:
    rng = random.Random(0)
    assert choose_action(_belief(0.1, 0.9, {}), [], rng) is None  # a leaf can only widen
    assert choose_action(_belief(0.9, 0.1, {"r.0": 0.9}), ["r.0"], rng) is None
    deeper = _belief(0.1, 0.9, {"r.0": 0.2, "r.1": 0.8, "r.2": 0.5})
    assert choose_action(deeper, ["r.0", "r.1", "r.2"], rng) == "r.1"
    assert choose_action(deeper, ["r.0", "r.2"], rng) == "r.2"  # only expandable children


def test_thompson_frequencies_follow_posterior_overlap() -> None:
    rng = random.Random(3)
    belief = NodeBelief(BetaPosterior(3, 3), BetaPosterior(3, 3), {"r.0": BetaPosterior(1, 1)})
    wider = sum(choose_action(belief, ["r.0"], rng) is None for _ in range(4000))
    assert wider / 4000 == pytest.approx(0.5, abs=0.03)  # equal posteriors: a fair coin


def _graph_with(ids: list[str]) -> SearchGraph:
    graph = SearchGraph("p", (1,), "q")
    for node_id in ids:
        parent, _ = node_id.rsplit(".", 1)
        graph.reserve_child_ids(parent, 1)
        depth = node_id.count(".")
        graph.add_child(Node(id=node_id, parent_id=parent, depth=depth, token_ids=(), text=""))
    return graph


def test_scores_back_up_to_gen_here_and_child_and_cont_above() -> None:
    strategy = ABMCTS(ABMCTSConfig(scorer="prm", distribution="beta"))
    ctx: Any = TreePort(_graph_with(["r.0", "r.0.0"]))
    policy = strategy.policy("r")
    assert isinstance(policy, NodeAggregation)
    children: dict[str, list[str]] = {}
    strategy._record(ctx, policy, children, "r", ctx.graph.node("r.0"), 0.75)
    strategy._record(ctx, policy, children, "r.0", ctx.graph.node("r.0.0"), 0.25)
    root, mid = policy.beliefs["r"], policy.beliefs["r.0"]
    assert children == {"r": ["r.0"], "r.0": ["r.0.0"]}

    def ab(post: object) -> tuple[float, float]:
        assert isinstance(post, BetaPosterior)
        return post.a, post.b

    assert ab(root.gen) == pytest.approx((1.25, 0.75))  # r.0's own score
    assert ab(root.cont) == pytest.approx((0.75, 1.25))  # r.0.0's score only
    assert ab(root.child["r.0"]) == pytest.approx((1.5, 1.5))  # both
    assert ab(mid.gen) == pytest.approx((0.75, 1.25))
    assert ab(mid.cont) == pytest.approx((0.5, 0.5))  # nothing below r.0.0 yet


def _ab(**extra: Any) -> dict[str, Any]:
    return {"name": "ab_mcts", "iterations": 10, "scorer": "prm", **extra}


def test_with_rollouts_every_iteration_yields_a_judged_answer() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(_ab(verifier="oracle"), problems, error_rate=0.4)
    for result in results:
        assert result.error is None
        assert result.detail["finished"] == result.detail["generated"] == 10
        assert result.detail["wider"] + result.detail["deeper"] >= 1
        graph = result.graph
        assert graph is not None and result.node_id is not None
        assert graph.score(result.node_id, "oracle") is not None


def test_parallel_decisions_share_one_request_per_node() -> None:
    problems = [make_problem(0, steps=3)]
    _, engine = run_strategy(_ab(parallel=4, iterations=8, rollout=False), problems)
    first = engine.requests[0]
    assert first.n == 4  # the first wave can only widen the root: one request of n=4
    steps = [r for r in engine.requests if r.sampling.stop]
    assert sum(r.n for r in steps) == 8


def test_mixed_model_draws_follow_the_data_and_pool_small_groups() -> None:
    rng = random.Random(0)
    prior = MixedPrior(sweeps=30)
    strong = [[0.9] * 30, [0.2] * 30]
    draws = [draw_group_means(strong, prior, rng) for _ in range(300)]
    assert statistics.fmean(d[0][0] for d in draws) == pytest.approx(0.9, abs=0.03)
    assert statistics.fmean(d[0][1] for d in draws) == pytest.approx(0.2, abs=0.03)
    # a new group is drawn from the population: between the groups, widely spread
    new = [d[1] for d in draws]
    assert 0.2 < statistics.fmean(new) < 0.9 and statistics.pstdev(new) > 0.1
    # a child seen once is pulled toward its siblings (partial pooling)
    noisy = [0.4, 1.0] * 10
    pooled = [draw_group_means([noisy, noisy, [0.0]], prior, rng)[0][2] for _ in range(300)]
    assert statistics.fmean(pooled) > 0.1


def test_mixed_policy_goes_deeper_into_a_clear_winner_and_wider_when_all_fail() -> None:
    rng = random.Random(1)
    policy = MixedModelPolicy(MixedPrior())
    policy.record(["r"], "r.0", 0.95)
    policy.record(["r"], "r.1", 0.05)
    for _ in range(20):
        policy.record(["r", "r.0"], "r.0.x", 0.95)
        policy.record(["r", "r.1"], "r.1.x", 0.05)
    picks = [policy.choose("r", ["r.0", "r.1"], rng) for _ in range(200)]
    assert picks.count("r.0") > 100 and picks.count("r.1") == 0
    weak = MixedModelPolicy(MixedPrior())
    for i in range(3):
        weak.record(["r"], f"r.{i}", 0.05)
        for _ in range(10):
            weak.record(["r", f"r.{i}"], f"r.{i}.x", 0.05)
    # every child is poor and alike: a new child is as likely as any old one to be best
    picks = [weak.choose("r", ["r.0", "r.1", "r.2"], rng) for _ in range(300)]
    assert picks.count(None) > 60


def test_ab_mcts_m_is_registered_and_grows_a_tree_of_judged_answers() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    results, _ = run_strategy(
        {"name": "ab_mcts_m", "iterations": 16, "scorer": "prm", "verifier": "oracle"},
        problems,
        error_rate=0.4,
    )
    for result in results:
        assert result.error is None
        assert result.detail["finished"] == result.detail["generated"] == 16
        assert result.detail["wider"] + result.detail["deeper"] >= 1
        assert result.graph is not None and result.node_id is not None
        assert result.graph.score(result.node_id, "oracle") is not None
    assert sum(r.detail["deeper"] for r in results) >= 1
    assert sum(bool(r.correct) for r in results) >= 3

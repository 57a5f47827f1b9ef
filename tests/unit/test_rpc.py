"""RPC: perplexity consistency (summed path probability per answer) with reasoning pruning."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.strategies.weibull_mixture import fit_weibull_mixture
from tests.conftest import make_problem
from tests.unit.sampling_support import run_strategy


class ProbabilityPolicy:
    """Writes one of a few answers by weight, each path distinct, at a chosen token logprob.

    Each option is ``(answer, weight, logprob)``: every character of the path gets ``logprob``
    (jittered a little per path), so the path probability is about exp(logprob). With
    ``copies`` set, an answer's paths are all one text (the same path sampled again).
    """

    def __init__(
        self,
        options: Sequence[tuple[str, float, float]],
        copies: frozenset[str] = frozenset(),
        jitter: float = 0.05,
    ) -> None:
        self.options = list(options)
        self.copies = copies
        self.jitter = jitter

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        answer, _, logprob = rng.choices(self.options, weights=[w for _, w, _ in self.options])[0]
        tag = 0 if answer in self.copies else rng.randint(1, 10**9)
        body = f"work {tag}\nAnswer: {answer}" + EOS
        jitter = 0.0 if answer in self.copies else rng.uniform(-self.jitter, self.jitter)
        return Continuation(body, (logprob + jitter,) * len(body))


# Many wrong paths the model finds unlikely (p ~ 0.30) outweigh a few likely right ones
# (p ~ 0.61), by count and by summed probability.
CROWD = [("7", 0.75, -1.2), ("9", 0.25, -0.5)]


def _accuracy(strategy: dict[str, object], policy: ProbabilityPolicy, problems: int = 10) -> int:
    results = run_strategy(
        strategy, [make_problem(i) for i in range(problems)], ScriptedEngine(policy)
    )
    return sum(r.answer == "9" for r in results)


def test_pruning_low_probability_paths_turns_the_vote() -> None:
    policy = ProbabilityPolicy(CROWD)
    voted = _accuracy({"name": "self_consistency", "n": 16}, policy)
    summed = _accuracy({"name": "rpc", "n": 16, "pruning": False}, policy)
    pruned = _accuracy({"name": "rpc", "n": 16}, policy)
    assert voted <= 1 and summed <= 2  # the crowd wins a plain or a probability-summed vote
    assert pruned >= 9  # without its low-probability paths, the crowd is gone


def test_pruned_paths_are_reported_and_stay_in_the_tree() -> None:
    [result] = run_strategy(
        {"name": "rpc", "n": 16}, [make_problem(0)], ScriptedEngine(ProbabilityPolicy(CROWD))
    )
    assert result.graph is not None
    sevens = [n for n in result.graph.nodes() if n.answer == "7"]
    assert result.detail["pruned"] == len(sevens) > 0
    assert all(result.graph.state(n.id).status == "terminal" for n in sevens)
    assert result.detail["votes"]["7"] == 0.0


def test_a_path_sampled_twice_counts_once() -> None:
    # "7" is one path sampled again and again; "9" several distinct paths, equally likely.
    policy = ProbabilityPolicy([("7", 0.6, -0.7), ("9", 0.4, -0.7)], copies=frozenset({"7"}))
    distinct = _accuracy({"name": "rpc", "n": 16, "pruning": False}, policy)
    every = _accuracy({"name": "rpc", "n": 16, "pruning": False, "distinct_paths": False}, policy)
    assert distinct >= 9 and every <= 2


def test_equally_likely_distinct_paths_give_the_majority_vote() -> None:
    policy = ProbabilityPolicy([("7", 0.5, -0.3), ("9", 0.5, -0.3)], jitter=0.0)
    problems = [make_problem(i) for i in range(6)]
    rpc = run_strategy({"name": "rpc", "n": 9}, problems, ScriptedEngine(policy))
    voted = run_strategy({"name": "self_consistency", "n": 9}, problems, ScriptedEngine(policy))
    assert [r.answer for r in rpc] == [r.answer for r in voted]
    assert all(r.detail["pruned"] == 0 and r.detail["samples"] == 9 for r in rpc)


def test_weibull_mixture_separates_two_clusters_and_declines_one() -> None:
    rng = random.Random(0)
    high = [min(1.0, rng.gauss(0.8, 0.05)) for _ in range(12)]
    low = [max(0.01, rng.gauss(0.3, 0.05)) for _ in range(8)]
    mixture = fit_weibull_mixture(high + low)
    assert mixture is not None and mixture.high.mean > mixture.low.mean
    membership = mixture.low_membership(high + low)
    assert all(m < 0.5 for m in membership[:12]) and all(m > 0.5 for m in membership[12:])
    assert fit_weibull_mixture([0.5] * 6) is None
    assert fit_weibull_mixture([0.5, 0.6]) is None
    assert mixture.high_weight == pytest.approx(0.6, abs=0.05)

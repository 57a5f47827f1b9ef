"""DeepConf: the confidence maths, offline filtering and online early stopping."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.rewards.confidence import (
    SlidingMean,
    bottom_group_confidence,
    group_confidences,
    lowest_group_confidence,
    percentile,
    predictive_entropy,
    tail_confidence,
    token_confidence,
)
from branchwise.strategies.deepconf import kept_share_threshold
from tests.conftest import make_problem
from tests.unit.sampling_support import (
    FLAT,
    PEAKED,
    ChoicePolicy,
    WholeSampleEngine,
    generated_in_graph,
    graph_shape,
    run_strategy,
)


def test_token_confidence_is_minus_the_mean_top_logprob() -> None:
    assert token_confidence((-0.1, -2.0, -3.9)) == pytest.approx(2.0)
    assert token_confidence(PEAKED) > token_confidence(FLAT)
    with pytest.raises(ValueError):
        token_confidence(())


def test_group_confidence_uses_sliding_windows_shrunk_for_short_traces() -> None:
    values = [5.0, 5.0, 1.0, 1.0, 5.0, 5.0]
    assert group_confidences(values, 2) == [5.0, 3.0, 1.0, 3.0, 5.0]
    assert lowest_group_confidence(values, 2) == 1.0
    assert lowest_group_confidence(values, 100) == pytest.approx(22 / 6)  # one window: the mean
    assert bottom_group_confidence(values, 2, 0.4) == pytest.approx(2.0)  # mean of 1.0, 3.0
    assert tail_confidence(values, 3) == pytest.approx(11 / 3)


def test_entropy_of_renormalised_top_k() -> None:
    assert predictive_entropy((-0.5, -0.5)) == pytest.approx(math.log(2))
    assert predictive_entropy((0.0,)) == 0.0
    assert predictive_entropy(FLAT) > 1.55 > 0.1 > predictive_entropy(PEAKED)


def test_percentile_interpolates_and_sliding_mean_waits_for_a_full_window() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0 and percentile([3.0, 1.0], 100) == 3.0
    window = SlidingMean(3)
    assert [window.push(v) for v in (3.0, 3.0, 3.0, 0.0)] == [None, None, 3.0, 2.0]


# Two wrong, uncertain answers outnumber the right, confident one.
OPTIONS = [
    ("1+1=2\nAnswer: 7", 0.45, False),
    ("1+1=2\nAnswer: 8", 0.2, False),
    ("1+1=2\nAnswer: 9", 0.35, True),
]


def test_offline_keeps_the_confident_traces_where_the_majority_is_wrong() -> None:
    problems = [make_problem(i) for i in range(6)]
    voted = run_strategy(
        {"name": "self_consistency", "n": 12}, problems, ScriptedEngine(ChoicePolicy(OPTIONS))
    )
    confident = run_strategy(
        {"name": "deepconf", "n": 12, "keep_percent": 30},
        problems,
        ScriptedEngine(ChoicePolicy(OPTIONS)),
    )
    assert sum(r.answer == "7" for r in voted) >= 4  # the plain vote mostly follows the crowd
    assert all(r.answer == "9" for r in confident)
    for result in confident:
        assert result.detail["voters"] == math.ceil(12 * 0.3)


def test_offline_weighting_alone_tilts_a_close_vote_to_confident_traces() -> None:
    close = [("Answer: 7", 0.5, False), ("Answer: 9", 0.5, True)]
    results = run_strategy(
        {"name": "deepconf", "n": 16, "keep_percent": 100},
        [make_problem(i) for i in range(4)],
        ScriptedEngine(ChoicePolicy(close)),
    )
    for result in results:
        votes = result.detail["votes"]
        assert result.answer == "9" or votes["7"] > 3 * votes.get("9", 0)


def test_online_stops_uncertain_traces_at_the_first_window_below_threshold() -> None:
    engine = ScriptedEngine(ChoicePolicy(OPTIONS), seconds_per_token=0.0005)
    strategy = {
        "name": "deepconf",
        "mode": "online",
        "n": 12,
        "warmup": 4,
        "window": 4,
        "keep_percent": 50,
        "consensus": None,  # watch every trace: this test is about the per-trace stop
    }
    offline = run_strategy(
        {**strategy, "mode": "offline"}, [make_problem(0)], ScriptedEngine(ChoicePolicy(OPTIONS))
    )
    [result] = run_strategy(strategy, [make_problem(0)], engine)
    graph = result.graph
    assert graph is not None
    stopped = [n for n in graph.nodes() if n.finish_reason == "abort"]
    assert len(stopped) == result.detail["stopped_early"] > 0
    threshold = result.detail["threshold"]
    assert token_confidence(FLAT) < threshold <= token_confidence(PEAKED)
    for node in stopped:
        # Every flat position is below the threshold: the stop comes on the first full window.
        assert len(node.token_ids) == 4
        assert graph.state(node.id).status == "aborted"
        assert any(rid.endswith(f":{node.id}x1") for rid in engine.aborted)
    assert result.answer == "9"
    assert result.usage["generated_tokens"] == generated_in_graph(result)
    assert result.usage["generated_tokens"] < offline[0].usage["generated_tokens"]
    assert result.usage["aborted_requests"] == len(stopped)


def test_online_warmup_must_leave_traces_to_watch() -> None:
    from branchwise.core.errors import RecipeError

    with pytest.raises(RecipeError, match="warmup"):
        run_strategy(
            {"name": "deepconf", "mode": "online", "n": 4, "warmup": 4},
            [make_problem(0)],
            ScriptedEngine(),
        )


def test_an_early_stop_does_not_depend_on_whether_the_engine_had_finished() -> None:
    # an engine that outruns its reader delivers whole samples: the stop must still count
    strategy = {
        "name": "deepconf",
        "mode": "online",
        "n": 12,
        "warmup": 4,
        "window": 4,
        "keep_percent": 50,
        "consensus": None,
    }
    streamed = graph_shape(
        run_strategy(strategy, [make_problem(0)], ScriptedEngine(ChoicePolicy(OPTIONS)))
    )
    whole = WholeSampleEngine(ScriptedEngine(ChoicePolicy(OPTIONS)))
    assert graph_shape(run_strategy(strategy, [make_problem(0)], whole)) == streamed  # type: ignore[arg-type]
    assert any(status == "aborted" for _, status, _, _ in streamed)


class JitterPolicy:
    """One answer; each trace's confidence differs a little (distinct warm-up confidences)."""

    def __init__(self, answers: Sequence[str] = ("7",)) -> None:
        self.answers = list(answers)

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        body = f"1+1=2\nAnswer: {rng.choice(self.answers)}" + EOS
        top = (-0.01 - rng.random(), -5.0, -6.0, -7.0, -8.0)
        return Continuation(body, (top[0],) * len(body), (top,) * len(body))


@pytest.mark.parametrize(
    "rule, keep, dropped",
    [
        ("ceiling", 90, 0),
        ("ceiling", 75, 1),
        ("ceiling", 50, 2),
        ("ceiling", 10, 3),
        # the reference's interpolated percentile drops one more at keep 90 % of 4 traces
        ("percentile", 90, 1),
        ("percentile", 75, 1),
        ("percentile", 50, 2),
        ("percentile", 10, 3),
    ],
)
def test_the_warmup_threshold_passes_the_kept_share_of_the_warmup(
    rule: str, keep: int, dropped: int
) -> None:
    strategy = {
        "name": "deepconf",
        "mode": "online",
        "n": 8,
        "warmup": 4,
        "window": 4,
        "keep_percent": keep,
        "consensus": None,
        "threshold_rule": rule,
    }
    results = run_strategy(
        strategy, [make_problem(i) for i in range(4)], ScriptedEngine(JitterPolicy())
    )
    for result in results:
        assert result.detail["warmup_below_threshold"] == dropped
    assert kept_share_threshold([3.0, 1.0, 2.0, 4.0], 90) == 1.0
    assert kept_share_threshold([float(v) for v in range(16)], 10) == 14.0  # 2 of 16 pass


def test_online_stops_adding_traces_at_consensus() -> None:
    strategy = {"name": "deepconf", "mode": "online", "n": 32, "warmup": 4, "wave": 4, "window": 4}
    engine = ScriptedEngine(JitterPolicy())
    [agreed] = run_strategy(strategy, [make_problem(0)], engine)
    assert agreed.detail["consensus_stop"] and agreed.detail["leader_share"] == 1.0
    assert agreed.detail["samples"] == 4  # the warm-up already agreed
    assert [r.n for r in engine.requests] == [4]
    [split] = run_strategy(strategy, [make_problem(0)], ScriptedEngine(JitterPolicy("789")))
    assert split.detail["samples"] > 4  # no consensus yet: more waves
    assert (split.detail["samples"] - 4) % 4 == 0 or split.detail["samples"] == 32
    full = run_strategy(
        {**strategy, "consensus": None}, [make_problem(0)], ScriptedEngine(JitterPolicy())
    )
    assert full[0].detail["samples"] == 32


def test_top_k_logprobs_default_follows_the_paper() -> None:
    engine = ScriptedEngine(JitterPolicy())
    run_strategy({"name": "deepconf", "n": 4}, [make_problem(0)], engine)
    assert all(r.sampling.logprobs == 20 for r in engine.requests)

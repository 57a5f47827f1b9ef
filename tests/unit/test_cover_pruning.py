"""Early hypothesis pruning by a confidence-weighted token set cover."""

from __future__ import annotations

import random
from collections.abc import Sequence

from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.strategies.set_cover import Hypothesis, token_units, weighted_cover
from tests.conftest import make_problem
from tests.unit.sampling_support import (
    WholeSampleEngine,
    generated_in_graph,
    graph_shape,
    run_strategy,
)


class FamilyPolicy:
    """Writes one of a few lexically distinct solutions (families), each always the same
    text and answer: a hypothesis that another covers is redundant, as the paper assumes."""

    def __init__(self, families: Sequence[tuple[str, float]], logprob: float = -0.2) -> None:
        self.families = list(families)
        self.logprob = logprob

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        text = rng.choices([t for t, _ in self.families], [w for _, w in self.families])[0]
        body = text + EOS
        return Continuation(body, (self.logprob,) * len(body))


FAMILIES = [
    ("Let x be 4. Then 2x is 8, so 8 + 1 = 9.\nAnswer: 9", 0.6),
    ("Guess: 3*2=6; add one and get 7 (quick).\nAnswer: 7", 0.4),
]
PROBLEMS = [make_problem(i) for i in range(6)]


def _run(strategy: dict[str, object], engine: object | None = None) -> list:  # type: ignore[type-arg]
    return run_strategy(strategy, PROBLEMS, engine or ScriptedEngine(FamilyPolicy(FAMILIES)))  # type: ignore[arg-type]


def test_pruning_covered_hypotheses_saves_tokens_and_keeps_the_vote() -> None:
    # min_keep = n turns the cover off: the same 16 samples, every one finished, a plain vote
    unpruned = _run({"name": "cover_pruning", "n": 16, "interval": 8, "min_keep": 16})
    pruned = _run({"name": "cover_pruning", "n": 16, "interval": 8})
    assert [r.detail["votes"] for r in pruned] == [r.detail["votes"] for r in unpruned]
    assert [r.answer for r in pruned] == [r.answer for r in unpruned]
    assert all(r.detail["pruned"] == 0 for r in unpruned)
    spent = sum(r.usage["generated_tokens"] for r in pruned)
    full = sum(r.usage["generated_tokens"] for r in unpruned)
    assert spent < 0.4 * full  # most hypotheses stop at the first checkpoint
    for result in pruned:
        assert result.usage["generated_tokens"] == generated_in_graph(result)
        assert result.usage["aborted_requests"] == result.detail["pruned"] >= 12
        assert result.detail["inherited"] == result.detail["pruned"]


def test_without_inherited_votes_the_survivors_vote_alone() -> None:
    inherited = _run({"name": "cover_pruning", "n": 16, "interval": 8})
    alone = _run({"name": "cover_pruning", "n": 16, "interval": 8, "inherit_votes": False})
    for result in alone:
        assert sum(result.detail["votes"].values()) == result.detail["voters"] <= 2
    for result in inherited:
        assert sum(result.detail["votes"].values()) == 16


def test_the_cover_keeps_what_others_do_not_cover_and_prefers_confidence() -> None:
    a = Hypothesis(0, token_units([1, 2, 3, 4], 1), 0.5)
    b = Hypothesis(1, token_units([1, 2], 1), 0.9)  # covered by a
    c = Hypothesis(2, token_units([5, 6], 1), 0.4)
    d = Hypothesis(3, token_units([5, 6], 1), 0.8)  # same units as c, more confident
    assert weighted_cover([a, b, c, d]) == {0, 3}
    assert weighted_cover([a, b, c, d], token_units([1, 2, 3, 4], 1)) == {3}
    assert weighted_cover([a, b, c, d], token_units([1, 2, 3, 4], 1), min_keep=2) == {3, 1}
    assert token_units([1, 2, 3, 1, 2], 2) == {(1, 2), (2, 3), (3, 1)}


def test_the_pruning_does_not_depend_on_how_the_engine_delivers_tokens() -> None:
    strategy = {"name": "cover_pruning", "n": 8, "interval": 8}
    streamed = graph_shape(
        run_strategy(strategy, PROBLEMS[:1], ScriptedEngine(FamilyPolicy(FAMILIES)))
    )
    whole = WholeSampleEngine(ScriptedEngine(FamilyPolicy(FAMILIES)))
    assert graph_shape(run_strategy(strategy, PROBLEMS[:1], whole)) == streamed  # type: ignore[arg-type]
    assert sum(status == "aborted" for _, status, _, _ in streamed) >= 5

"""LLM judges on the scripted engine, with a scripted policy that plays the judge."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.orchestrator.engines.config import ScriptedEngineConfig
from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.verifiers.judges import (
    PairwiseJudge,
    PointwiseJudge,
    PointwiseJudgeConfig,
    TournamentJudge,
)
from branchwise.verifiers.judging import knockout

PROBLEM = Problem(id="p", question="What is 6*7?", answer="42")


class JudgePolicy:
    """Knows the right answer; grades, compares, or (biased) always says the first letter."""

    def __init__(self, mode: str, *, biased: bool = False) -> None:
        self.mode = mode
        self.biased = biased
        self.prompts: list[str] = []

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        self.prompts.append(prompt)
        answers = re.findall(r"Answer: (\d+)", prompt)
        right = [a == "42" for a in answers]
        if self.mode == "score":
            text = " 9" if right[0] else " 2"
        elif self.mode == "garbage":
            text = " I would rather not say"
        elif self.mode == "yes":
            text = "Yes" if right[0] else "No"
        elif self.mode == "letters":  # first-token mass over 'A' and its neighbour 'B'
            lp = -0.5 if right[0] else -1.0
            return Continuation("A" + EOS, (lp, 0.0), top_logprobs=((lp, -1.5 - lp),))
        else:
            text = " A" if self.biased or right[0] or not right[1] else " B"
        return Continuation(text + EOS, tuple([-0.1] * (len(text) + 1)))


def candidate(i: int, answer: str) -> Candidate:
    return Candidate(
        node_id=f"r.{i}",
        prompt="",
        steps=("6*7 is ...\n", f"Answer: {answer}"),
        answer=answer,
        terminal=True,
    )


def judge(cls: type, policy: JudgePolicy, **config: object) -> tuple[object, ScriptedEngine]:
    engine = ScriptedEngine(policy)
    config_model = cls.config_model  # type: ignore[attr-defined]
    return cls(config_model(kind="judge", **config), ScorerResources(engine=engine)), engine


def scores_of(scorer: object, candidates: list[Candidate]) -> list:  # type: ignore[type-arg]
    return asyncio.run(scorer.score(PROBLEM, candidates))  # type: ignore[attr-defined]


def test_pointwise_text_scores_are_parsed_and_scaled() -> None:
    scorer, _ = judge(PointwiseJudge, JudgePolicy("score"))
    scores = scores_of(scorer, [candidate(0, "42"), candidate(1, "41")])
    assert [s.value for s in scores] == pytest.approx([8 / 9, 1 / 9])


def test_unreadable_judge_output_is_a_failure_not_a_default() -> None:
    scorer, _ = judge(PointwiseJudge, JudgePolicy("garbage"))
    (score,) = scores_of(scorer, [candidate(0, "42")])
    assert not score.ok and score.value is None
    assert "no score" in (score.error or "")
    assert str(score.detail["judge"]).startswith(" I would rather")


def test_pointwise_p_yes_reads_first_token_mass() -> None:
    policy = JudgePolicy("letters")
    scorer, _ = judge(PointwiseJudge, policy, read="logprobs", yes_words=("A",), no_words=("B",))
    right, wrong = scores_of(scorer, [candidate(0, "42"), candidate(1, "41")])
    p = lambda lp: 2.718281828**lp  # noqa: E731
    assert right.value == pytest.approx(p(-0.5) / (p(-0.5) + p(-1.0)), rel=1e-6)
    assert wrong.value == pytest.approx(p(-1.0) / (p(-1.0) + p(-0.5)), rel=1e-6)


def test_p_yes_fails_when_neither_word_is_in_the_top_k() -> None:
    scorer, _ = judge(PointwiseJudge, JudgePolicy("score"), read="logprobs")
    (score,) = scores_of(scorer, [candidate(0, "42")])
    assert not score.ok and "top-k" in (score.error or "")


def test_pairwise_round_robin_ranks_the_right_answer_first() -> None:
    scorer, engine = judge(PairwiseJudge, JudgePolicy("pair"))
    scores = scores_of(scorer, [candidate(0, "41"), candidate(1, "42"), candidate(2, "40")])
    assert scores[1].value == 1.0
    assert scores[0].value == scores[2].value == pytest.approx(0.25)
    assert len(engine.requests) == 3 * 2  # three pairs, both orders


def test_both_orders_cancel_position_bias() -> None:
    scorer, _ = judge(PairwiseJudge, JudgePolicy("pair", biased=True))
    scores = scores_of(scorer, [candidate(0, "41"), candidate(1, "42")])
    assert [s.value for s in scores] == [0.5, 0.5]


def test_tournament_finds_the_right_answer_in_log_rounds() -> None:
    scorer, engine = judge(TournamentJudge, JudgePolicy("pair"))
    answers = ["40", "41", "43", "42", "44"]
    scores = scores_of(scorer, [candidate(i, a) for i, a in enumerate(answers)])
    assert scores[3].value == 1.0
    assert all(s.value is not None and s.value < 1.0 for i, s in enumerate(scores) if i != 3)
    assert scores[3].detail["rounds"] == 3
    assert len(engine.requests) == (len(answers) - 1) * 2


def test_knockout_runs_each_round_concurrently_and_records_failures() -> None:
    active, peak = 0, 0

    async def compare(i: int, j: int) -> float:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        if (i, j) == (4, 5):
            raise ValueError("unreadable")
        return 1.0 if i > j else 0.0

    bracket = asyncio.run(knockout(8, compare))
    assert bracket.comparisons == 7 and bracket.rounds == 3 and peak == 4
    assert bracket.failures == {5: "ValueError: unreadable"}
    assert bracket.winner == 7


def test_judge_can_build_its_own_engine() -> None:
    config = PointwiseJudgeConfig(kind="judge", engine={"kind": "scripted", "error_rate": 0.0})
    assert isinstance(config.engine, ScriptedEngineConfig)
    scorer = PointwiseJudge(config, ScorerResources(engine=None))
    (score,) = asyncio.run(scorer.score(PROBLEM, [candidate(0, "42")]))
    assert not score.ok  # the default policy cannot grade, and that shows as a failure
    asyncio.run(scorer.aclose())


@pytest.mark.parametrize(
    ("cls", "mode"),
    [(PointwiseJudge, "score"), (PairwiseJudge, "pair"), (TournamentJudge, "pair")],
)
def test_every_judge_call_is_charged_to_the_search_that_asked(cls: type, mode: str) -> None:
    from branchwise.core.scorer_spend import ScorerSpend, charged_to

    scorer, engine = judge(cls, JudgePolicy(mode))
    spent: list[ScorerSpend] = []

    async def scored() -> None:
        with charged_to(spent.append):
            await scorer.score(PROBLEM, [candidate(0, "41"), candidate(1, "42")])  # type: ignore[attr-defined]

    asyncio.run(scored())
    assert len(spent) == len(engine.requests) > 0
    assert all(s.prompt_tokens > 0 and s.generated_tokens > 0 for s in spent)
    scores_of(scorer, [candidate(0, "41")])  # outside a search nothing is charged
    assert len(spent) == len(engine.requests) - (1 if cls is PointwiseJudge else 0)

"""Answer equivalence, the testbed step checker as a scorer, intrinsic signals, aggregation."""

from __future__ import annotations

import asyncio
import math

import pytest

from branchwise.core.problem import Problem
from branchwise.core.scorers import SCORERS, Candidate, ScorerConfig, ScorerResources
from branchwise.core.values import StepAggregation
from branchwise.rewards.intrinsic import self_certainty
from branchwise.verifiers.equivalence import (
    AnswerEquivalence,
    AnswerEquivalenceConfig,
    answers_equivalent,
)

QUESTION = "Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?"
TESTBED = Problem(id="t0", question=QUESTION, answer="54")


def cand(text: str, answer: str | None = None, **extra: object) -> Candidate:
    steps = tuple(line + "\n" for line in text.split("\n")[:-1]) + (
        (text.split("\n")[-1],) if text.split("\n")[-1] else ()
    )
    return Candidate(
        node_id="r.0",
        prompt=QUESTION + "\n",
        steps=steps,
        answer=answer,
        terminal=answer is not None,
        **extra,
    )  # type: ignore[arg-type]


def build(kind: str, **config: object) -> object:
    cls = SCORERS.get(kind)
    return cls(cls.config_model(kind=kind, **config), ScorerResources())


def run(scorer: object, problem: Problem, candidates: list[Candidate]) -> list:  # type: ignore[type-arg]
    return asyncio.run(scorer.score(problem, candidates))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("answer", "reference", "mode", "same"),
    [
        ("1/2", "0.5", "math", True),
        ("\\frac{1}{2}", "0.5", "math", True),
        ("\\frac{1}{2}", "1/2", "math", True),
        ("0.5", "1/3", "math", False),
        ("1/2", "0.5", "normalised", False),
        ("1,000.", "1000", "normalised", True),
        ("Paris", "paris", "normalised", True),
        ("Paris", "paris", "exact", False),
        (" 42 ", "42", "exact", True),
        ("12.0", "12", "math", True),
        ("blue", "red", "math", False),
        (None, "1", "math", False),
    ],
)
def test_answer_equivalence_modes(
    answer: str | None, reference: str, mode: str, same: bool
) -> None:
    assert answers_equivalent(answer, reference, mode) is same  # type: ignore[arg-type]


def test_answer_equivalence_scorer_grades_against_the_reference() -> None:
    scorer = AnswerEquivalence(
        AnswerEquivalenceConfig(kind="answer_equivalence"), ScorerResources()
    )
    problem = Problem(id="h", question="half?", answer="\\frac{1}{2}")
    scores = run(scorer, problem, [cand("x", "0.5"), cand("x", "0.25"), cand("x", None)])
    assert [s.value for s in scores] == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="reference"):
        run(scorer, Problem(id="n", question="q"), [cand("x", "1")])


def steps_cand(text: str, answer: str | None = None) -> Candidate:
    """A candidate whose steps are `text` cut after each `"\\n\\n"` (delimiters kept)."""
    parts = text.split("\n\n")
    steps = tuple(part + "\n\n" for part in parts[:-1]) + ((parts[-1],) if parts[-1] else ())
    return Candidate(
        node_id="r.0", prompt=QUESTION, steps=steps, answer=answer, terminal=answer is not None
    )


def test_arithmetic_steps_scores_each_step_and_the_answer_step() -> None:
    scorer = build("arithmetic_steps")
    right = "7 + 15 = 22.\n\n22 - 4 = 18.\n\n18 * 3 = 54.\n\nThe answer is \\boxed{54}."
    slip = "7 + 15 = 22.\n\n22 - 4 = 17.\n\n17 * 3 = 51.\n\nThe answer is \\boxed{51}."
    partial = "15 + 7 = 22.\n\n22 - 4 = 18.\n\n"
    wrong_box = "7 + 15 = 22.\n\n22 - 4 = 18.\n\n18 * 3 = 54.\n\nThe answer is \\boxed{18}."
    candidates = [
        steps_cand(right, "54"),
        steps_cand(slip, "51"),
        steps_cand(partial),
        steps_cand(wrong_box, "18"),
    ]
    scores = run(scorer, TESTBED, candidates)
    assert scores[0].step_values == (1.0, 1.0, 1.0, 1.0) and scores[0].value == 1.0
    assert scores[1].step_values == (1.0, 0.0, 0.0, 0.0)
    assert scores[2].step_values == (1.0, 1.0) and scores[2].value == 1.0
    assert scores[3].step_values == (1.0, 1.0, 1.0, 0.0)


def test_arithmetic_steps_rejects_a_foreign_question() -> None:
    with pytest.raises(ValueError):
        run(build("arithmetic_steps"), Problem(id="x", question="Start with 3."), [cand("1")])


def test_intrinsic_scorers_are_oriented_higher_is_more_confident() -> None:
    calm = cand("a\n", token_logprobs=(-0.1, -0.1), top_logprobs=((-0.1, -3.0), (-0.1, -3.0)))
    torn = cand("b\n", token_logprobs=(-0.7, -0.7), top_logprobs=((-0.7, -0.7), (-0.7, -0.7)))
    bare = cand("c\n")
    for kind in ("perplexity", "self_certainty", "token_entropy", "group_confidence"):
        a, b, c = run(build(kind), TESTBED, [calm, torn, bare])
        assert a.value is not None and b.value is not None, kind
        assert a.value > b.value, kind
        assert not c.ok and "logprobs" in (c.error or ""), kind


def test_self_certainty_is_zero_for_a_flat_top_k_and_grows_when_peaked() -> None:
    assert self_certainty([-1.0, -1.0, -1.0]) == pytest.approx(0.0)
    assert self_certainty([-0.01, -5.0, -6.0]) > self_certainty([-0.5, -1.0, -2.0]) > 0


def test_token_entropy_max_statistic() -> None:
    scorer = build("token_entropy", statistic="max")
    c = cand("a\n", token_logprobs=(-0.1, -0.7), top_logprobs=((-0.1, -3.0), (-0.7, -0.7)))
    (score,) = run(scorer, TESTBED, [c])
    assert score.value == pytest.approx(-math.log(2))


def test_step_aggregation_keeps_the_plain_functions_and_adds_two() -> None:
    values = [0.9, 0.5, 0.8]
    plain = {"min": 0.5, "product": 0.9 * 0.5 * 0.8, "last": 0.8, "mean": 2.2 / 3}
    for how, expected in plain.items():
        assert StepAggregation(method=how)(values) == pytest.approx(expected)  # type: ignore[arg-type]
    geo = StepAggregation(method="geometric_mean")(values)
    assert geo == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3))
    assert StepAggregation(method="weighted_mean", decay=1.0)(values) == pytest.approx(
        sum(values) / 3
    )
    recent = StepAggregation(method="weighted_mean", decay=0.5)(values)
    assert recent == pytest.approx((0.25 * 0.9 + 0.5 * 0.5 + 0.8) / 1.75)
    assert StepAggregation(method="geometric_mean")([0.0, 1.0]) == pytest.approx(1e-3)
    assert StepAggregation()([]) is None


def test_every_registered_scorer_has_a_description_and_documented_fields() -> None:
    for name, cls in SCORERS:
        assert cls.description, name
        for field_name, info in cls.config_model.model_fields.items():
            if field_name not in ScorerConfig.model_fields:
                assert info.description, f"{name}.{field_name}"

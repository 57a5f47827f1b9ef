"""Reported accuracy: answer extraction and the three grading rules on real-looking strings."""

from __future__ import annotations

import pytest

from branchwise.verifiers.answers import AnswerSpec, extract_answer
from branchwise.verifiers.grading import GradingSpec, grade, parse_number


@pytest.mark.parametrize(
    ("text", "method", "answer"),
    [
        ("so \\boxed{\\frac{1}{\\sqrt{2}}} is it", "boxed", "\\frac{1}{\\sqrt{2}}"),
        ("first \\boxed{1} then \\boxed{{a}+{b}}.", "boxed", "{a}+{b}"),
        ("Half of 8 is <<8/2=4>>4.\n#### 1,000", "gsm8k", "1000"),
        ("She keeps 3/4 of the cake", "last_number", "3/4"),
        ("It costs $18.", "last_number", "18"),
        ("The rate is 5%.", "last_number", "5"),
    ],
)
def test_extraction(text: str, method: str, answer: str) -> None:
    assert extract_answer(text, AnswerSpec(method=method)) == answer  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "reference", "exact", "numeric", "math"),
    [
        ("$18", "18", True, True, True),  # normalisation strips $...$ and the dollar sign
        ("1/2", "0.5", False, True, True),
        ("\\frac{1}{2}", "0.5", False, True, True),
        ("\\frac{1}{2}", "1/2", False, True, True),
        ("5\\%", "5", False, True, True),
        ("5%", "0.05", False, False, False),
        ("1,000", "1000", True, True, True),
        ("2\\sqrt{2}", "\\sqrt{8}", False, False, True),
        ("(1, 2)", "(1,2)", False, False, True),
        ("17", "18", False, False, False),
        (None, "18", False, False, False),
    ],
)
def test_grading_rules(
    answer: str | None, reference: str, exact: bool, numeric: bool, math: bool
) -> None:
    assert grade(answer, reference, GradingSpec(method="exact")) is exact
    assert grade(answer, reference, GradingSpec(method="numeric")) is numeric
    assert grade(answer, reference, GradingSpec(method="math")) is math


def test_parse_number_reads_the_common_decorations() -> None:
    assert parse_number("-\\frac{3}{4}") == parse_number("-0.75")
    assert parse_number("\\$1,250") == 1250
    assert parse_number("twelve") is None
    assert parse_number("1/0") is None

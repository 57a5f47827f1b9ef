"""The exact step checker: parsing, prefix correctness, operands from the question, answers."""

from __future__ import annotations

import pytest

from branchwise.verifiers.arithmetic_steps import (
    Chain,
    check_steps,
    extract_answer,
    is_correct,
    parse_question,
    parse_steps,
    solve,
)

QUESTION = "Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?"
GOLD = "7 + 15 = 22.\n\n22 - 4 = 18.\n\n18 * 3 = 54.\n\nThe answer is \\boxed{54}."


def sol(*steps: str) -> str:
    return "\n\n".join(steps)


def test_parse_question() -> None:
    assert parse_question(QUESTION) == Chain(start=7, operations=(("+", 15), ("-", 4), ("*", 3)))
    chain = parse_question("Bob has 12 eggs. He halves them. He keeps a third. How many eggs now?")
    assert chain.operations == (("/", 2), ("/", 3))
    assert solve(QUESTION) == 54


@pytest.mark.parametrize("bad", ["What is 2+2?", "Mia has 7 pens. She eats 3. How many pens now?"])
def test_parse_question_rejects_other_text(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_question(bad)


def test_parse_steps() -> None:
    assert parse_steps(GOLD) == [
        "7 + 15 = 22.",
        "22 - 4 = 18.",
        "18 * 3 = 54.",
        "The answer is \\boxed{54}.",
    ]
    assert parse_steps("7 + 15 = 22.\n\n22 - 4 = 18.\n\n") == ["7 + 15 = 22.", "22 - 4 = 18."]
    # Blank segments (longer newline runs, spaces) are not steps.
    assert parse_steps("7 + 15 = 22.\n\n\n\n \n\n22 - 4 = 18.") == ["7 + 15 = 22.", "22 - 4 = 18."]
    assert parse_steps("7 + 15 = 22.\n\n\n22 - 4") == ["7 + 15 = 22.", "22 - 4"]
    assert parse_steps("") == [] and parse_steps("\n\n") == []


def test_gold_solution_is_all_correct() -> None:
    assert check_steps(QUESTION, GOLD) == [True] * 4
    assert check_steps({"question": QUESTION}, GOLD) == [True] * 4
    # A missing final period or extra spaces do not matter.
    assert check_steps(QUESTION, sol("7+15=22", "22 - 4 =  18.")) == [True, True]


def test_arithmetic_error_and_everything_after_is_wrong() -> None:
    text = sol("7 + 15 = 23.", "23 - 4 = 19.", "19 * 3 = 57.", "The answer is \\boxed{57}.")
    assert check_steps(QUESTION, text) == [False] * 4
    assert check_steps(QUESTION, sol("7 + 15 = 22.", "22 - 4 = 17.", "17 * 3 = 51.")) == [
        True,
        False,
        False,
    ]


def test_right_arithmetic_wrong_operand_is_wrong() -> None:
    # 22 - 5 = 17 is true arithmetic, but the question says she loses 4.
    assert check_steps(QUESTION, sol("7 + 15 = 22.", "22 - 5 = 17.")) == [True, False]
    # Doubling instead of tripling.
    text = sol("7 + 15 = 22.", "22 - 4 = 18.", "18 * 2 = 36.")
    assert check_steps(QUESTION, text) == [True, True, False]
    # Not continuing from the running value.
    assert check_steps(QUESTION, sol("7 + 15 = 22.", "21 - 4 = 17.")) == [True, False]
    # Wrong operation.
    assert check_steps(QUESTION, "7 - 15 = 0.") == [False]


def test_commutative_swap_is_accepted_only_for_plus_and_times() -> None:
    text = sol("15 + 7 = 22.", "22 - 4 = 18.", "3 * 18 = 54.")
    assert check_steps(QUESTION, text) == [True, True, True]
    assert check_steps(QUESTION, sol("7 + 15 = 22.", "4 - 22 = 18.")) == [True, False]


def test_answer_step_rules() -> None:
    # Too early, wrong value, or a step after the answer: wrong.
    assert check_steps(QUESTION, sol("7 + 15 = 22.", "The answer is \\boxed{22}.")) == [
        True,
        False,
    ]
    assert check_steps(QUESTION, GOLD.replace("{54}", "{55}")) == [True, True, True, False]
    assert check_steps(QUESTION, sol(GOLD, "54 + 0 = 54.")) == [True] * 4 + [False]
    assert check_steps(QUESTION, sol("7 + 15 = 22.", "foo", "22 - 4 = 18.")) == [
        True,
        False,
        False,
    ]
    assert check_steps(QUESTION, "") == []


def test_extract_answer() -> None:
    assert extract_answer(GOLD) == "54"
    assert extract_answer("so \\boxed{1,200} or \\boxed{0032}") == "32"
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{12") is None
    assert extract_answer("1 + 1 = 2.\n#### 0032") == "32"
    assert extract_answer("Answer: 1,200") == "1200"
    assert extract_answer("7 + 15 = 22.\n\n") is None
    assert extract_answer("\\boxed{}") is None


def test_is_correct() -> None:
    assert is_correct(QUESTION, GOLD)
    assert is_correct({"question": QUESTION, "answer": "54"}, "\\boxed{54}")
    assert is_correct({"question": QUESTION, "answer": "18 * 3 = 54.\n#### 54"}, "\\boxed{54}")
    assert is_correct({"question": QUESTION, "answer": "so \\boxed{54}"}, "\\boxed{54}")
    assert not is_correct(QUESTION, "The answer is \\boxed{55}.")
    assert not is_correct(QUESTION, "7 + 15 = 22.\n\n")
    # Outcome only: a lucky final answer counts even after a wrong step.
    assert is_correct(QUESTION, sol("7 + 15 = 21.", "21 - 4 = 18.", "The answer is \\boxed{54}."))

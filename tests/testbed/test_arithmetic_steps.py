"""The exact step checker: parsing, prefix correctness, operands from the question, answers."""

from __future__ import annotations

import pytest

from verifiers.arithmetic_steps import (
    Chain,
    check_steps,
    extract_answer,
    is_correct,
    parse_question,
    parse_steps,
    solve,
)

QUESTION = "Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?"
GOLD = "7+15=22\n22-4=18\n18*3=54\nAnswer: 54"


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
    assert parse_steps(GOLD) == ["7+15=22", "22-4=18", "18*3=54"]
    assert parse_steps("7+15=22\n22-4=18\n") == ["7+15=22", "22-4=18"]
    assert parse_steps("7+15=22\n\n22-4=18\n") == ["7+15=22", "", "22-4=18"]
    assert parse_steps("7+15=22\n22-4") == ["7+15=22", "22-4"]
    assert parse_steps("Answer: 3\n1+1=2\n") == []
    assert parse_steps("") == []


def test_gold_solution_is_all_correct() -> None:
    assert check_steps(QUESTION, GOLD) == [True, True, True]
    assert check_steps({"question": QUESTION}, GOLD) == [True, True, True]


def test_arithmetic_error_and_everything_after_is_wrong() -> None:
    text = "7+15=23\n23-4=19\n19*3=57\nAnswer: 57"
    assert check_steps(QUESTION, text) == [False, False, False]
    assert check_steps(QUESTION, "7+15=22\n22-4=17\n17*3=51\n") == [True, False, False]


def test_right_arithmetic_wrong_operand_is_wrong() -> None:
    # 22-5=17 is true arithmetic, but the question says she loses 4.
    assert check_steps(QUESTION, "7+15=22\n22-5=17\n") == [True, False]
    # Doubling instead of tripling.
    assert check_steps(QUESTION, "7+15=22\n22-4=18\n18*2=36\n") == [True, True, False]
    # Not continuing from the running value.
    assert check_steps(QUESTION, "7+15=22\n21-4=17\n") == [True, False]
    # Wrong operation.
    assert check_steps(QUESTION, "7-15=0\n") == [False]


def test_commutative_swap_is_accepted_only_for_plus_and_times() -> None:
    assert check_steps(QUESTION, "15+7=22\n22-4=18\n3*18=54\n") == [True, True, True]
    assert check_steps(QUESTION, "7+15=22\n4-22=18\n") == [True, False]


def test_extra_and_malformed_steps_are_wrong() -> None:
    assert check_steps(QUESTION, GOLD.replace("Answer", "54+0=54\nAnswer")) == [True] * 3 + [False]
    assert check_steps(QUESTION, "7 + 15 = 22\nfoo\n22-4=18\n") == [True, False, False]
    assert check_steps(QUESTION, "") == []


def test_extract_answer() -> None:
    assert extract_answer(GOLD) == "54"
    assert extract_answer("1+1=2\n#### 0032") == "32"
    assert extract_answer("Answer: 1,200") == "1200"
    assert extract_answer("Answer: lots") == "lots"
    assert extract_answer("7+15=22\n") is None
    assert extract_answer("Answer:") is None


def test_is_correct() -> None:
    assert is_correct(QUESTION, GOLD)
    assert is_correct({"question": QUESTION, "answer": "54"}, "Answer: 54")
    assert is_correct({"question": QUESTION, "answer": "18*3=54\n#### 54"}, "Answer: 54")
    assert not is_correct(QUESTION, "Answer: 55")
    assert not is_correct(QUESTION, "7+15=22\n")
    # Outcome only: a lucky final answer counts even after a wrong step.
    assert is_correct(QUESTION, "7+15=21\n21-4=18\n18*3=54\nAnswer: 54")

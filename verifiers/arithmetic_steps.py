"""Exact step checker for the testbed's arithmetic word problems: the perfect process reward.

The testbed (`examples/testbed/task.py`) tells a chain of operations in words, e.g.

    Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?

and a solution is one step per line, then an answer line:

    7+15=22
    22-4=18
    18*3=54
    Answer: 54

Rules, decided here and relied on by the learned PRM's labels:

- A step is a line before the answer line (`Answer: N`, or GSM8K's `#### N`). A text that ends
  in "\\n" has no trailing empty step; an empty or malformed line in between is a (wrong) step.
- Step i is correct iff it reads `a<op>b=c` where `a` is the correct running value so far (the
  start value for the first step), `op` and `b` are the i-th operation of the question, and `c`
  is exactly `a op b`. `+` and `*` also accept their operands swapped. Spaces are ignored.
- Correctness is prefix correctness: once a step is wrong, every later step is wrong too, even if
  its own arithmetic holds (it no longer follows the problem's chain). Steps beyond the chain's
  length are wrong.
- `is_correct` judges the outcome only: the final answer equals the problem's answer.

A problem is given as its question text, or as a record (mapping) with a `question` key and,
optionally, an `answer` key (a plain integer string, or GSM8K form ending in `#### N`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Chain",
    "check_steps",
    "extract_answer",
    "is_correct",
    "parse_question",
    "parse_steps",
    "solve",
]

ProblemLike = str | Mapping[str, object]

_START_RE = re.compile(r"^\s*\w+ has (\d+) \w+\.")
_OPERATION_RES: tuple[tuple[re.Pattern[str], str, int | None], ...] = (
    (re.compile(r"^\w+ (?:gets|buys|finds) (\d+) more\.$"), "+", None),
    (re.compile(r"^\w+ (?:loses|gives away|sells) (\d+)\.$"), "-", None),
    (re.compile(r"^\w+ doubles them\.$"), "*", 2),
    (re.compile(r"^\w+ triples them\.$"), "*", 3),
    (re.compile(r"^\w+ halves them\.$"), "/", 2),
    (re.compile(r"^\w+ keeps a third\.$"), "/", 3),
)
_SENTENCE_RE = re.compile(r"[^.?]+[.?]")
_STEP_RE = re.compile(r"(\d+)([+\-*/])(\d+)=(\d+)")
_ANSWER_RE = re.compile(r"^\s*(?:Answer:|####)(.*)$")


@dataclass(frozen=True, kw_only=True)
class Chain:
    """The problem's start value and its operations, in order, as (op, operand)."""

    start: int
    operations: tuple[tuple[str, int], ...]


def parse_question(question: str) -> Chain:
    """Read the chain of operations out of a testbed question; ValueError if it is not one."""
    start = _START_RE.match(question)
    if start is None:
        raise ValueError(f"not a testbed question (no start value): {question!r}")
    operations: list[tuple[str, int]] = []
    for raw in _SENTENCE_RE.findall(question[start.end() :]):
        sentence = raw.strip()
        if sentence.startswith("How many"):
            break
        for pattern, op, fixed in _OPERATION_RES:
            found = pattern.match(sentence)
            if found:
                operations.append((op, fixed if fixed is not None else int(found.group(1))))
                break
        else:
            raise ValueError(f"unknown sentence {sentence!r} in question {question!r}")
    if not operations:
        raise ValueError(f"question has no operations: {question!r}")
    return Chain(start=int(start.group(1)), operations=tuple(operations))


def _apply(left: int, op: str, right: int) -> int | None:
    """`left op right` if it is a non-negative integer, else None."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right if left >= right else None
    if op == "*":
        return left * right
    if right != 0 and left % right == 0:
        return left // right
    return None


def solve(question: str) -> int:
    """The correct final answer of a testbed question."""
    chain = parse_question(question)
    value: int | None = chain.start
    for op, operand in chain.operations:
        assert value is not None
        value = _apply(value, op, operand)
    if value is None:
        raise ValueError(f"question leaves the non-negative integers: {question!r}")
    return value


def parse_steps(text: str) -> list[str]:
    """The step lines of a solution: every line before the answer line, without newlines."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    steps: list[str] = []
    for line in lines:
        if _ANSWER_RE.match(line):
            break
        steps.append(line)
    return steps


def _question_of(problem: ProblemLike) -> str:
    if isinstance(problem, str):
        return problem
    question = problem.get("question")
    if not isinstance(question, str):
        raise ValueError("problem record has no string 'question'")
    return question


def check_steps(problem: ProblemLike, solution: str) -> list[bool]:
    """Prefix correctness of each step of `solution` (the text written after the prompt)."""
    chain = parse_question(_question_of(problem))
    value = chain.start
    verdicts: list[bool] = []
    ok = True
    for i, line in enumerate(parse_steps(solution)):
        if ok:
            ok = i < len(chain.operations)
        if ok:
            op, operand = chain.operations[i]
            expected = _apply(value, op, operand)
            found = _STEP_RE.fullmatch(line.replace(" ", ""))
            ok = found is not None and expected is not None
            if found is not None and expected is not None:
                left, got_op, right, result = found.groups()
                operands = (int(left), int(right))
                allowed = {(value, operand)}
                if op in "+*":
                    allowed.add((operand, value))
                ok = got_op == op and operands in allowed and int(result) == expected
                value = expected
        verdicts.append(ok)
    return verdicts


def _canonical_number(text: str) -> str:
    """`"0032"` -> `"32"`, `"1,200"` -> `"1200"`; other text is returned stripped."""
    cleaned = text.strip().replace(",", "")
    if re.fullmatch(r"\d+", cleaned):
        return str(int(cleaned))
    return cleaned


def extract_answer(text: str) -> str | None:
    """The final answer after `Answer:` (or `####`), canonicalised; None if there is none."""
    for line in text.split("\n"):
        found = _ANSWER_RE.match(line)
        if found:
            answer = _canonical_number(found.group(1))
            return answer or None
    return None


def _gold_answer(problem: ProblemLike) -> str:
    if not isinstance(problem, str):
        answer = problem.get("answer")
        if isinstance(answer, str | int):
            text = str(answer)
            gold = extract_answer(text) if "####" in text else _canonical_number(text)
            if gold:
                return gold
    return str(solve(_question_of(problem)))


def is_correct(problem: ProblemLike, text: str) -> bool:
    """Whether the final answer in `text` equals the problem's answer (outcome only)."""
    answer = extract_answer(text)
    return answer is not None and answer == _gold_answer(problem)

"""Exact step checker for the testbed's arithmetic word problems: the perfect process reward.

The testbed (`examples/testbed/task.py`) tells a chain of operations in words, e.g.

    Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?

and a solution is one operation per step, steps separated by `"\\n\\n"`, the last step giving
the answer in `\\boxed{}`:

    7 + 15 = 22.

    22 - 4 = 18.

    18 * 3 = 54.

    The answer is \\boxed{54}.

Rules, decided here and relied on by the learned PRM's labels:

- Steps are the `"\\n\\n"`-separated segments of the text, stripped; blank segments are not
  steps. The answer step (the one holding `\\boxed{}`) is a step like the others.
- Calculation step i is correct iff it reads `a op b = c` (a final period optional, spaces
  ignored) where `a` is the correct running value so far (the start value for the first step),
  `op` and `b` are the i-th operation of the question, and `c` is exactly `a op b`. `+` and `*`
  also accept their operands swapped.
- The answer step is correct iff it comes right after the last operation and its `\\boxed{}`
  holds the correct final value. An answer step before that, or any step after it, is wrong.
- Correctness is prefix correctness: once a step is wrong, every later step is wrong too, even if
  its own arithmetic holds (it no longer follows the problem's chain).
- `is_correct` judges the outcome only: the final answer (the last `\\boxed{}`; for older texts
  an `Answer: N` or `#### N` line) equals the problem's answer.

A problem is given as its question text, or as a record (mapping) with a `question` key and,
optionally, an `answer` key (a plain integer string, GSM8K form ending in `#### N`, or a text with
a `\\boxed{}` answer).
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
_STEP_RE = re.compile(r"(\d+)([+\-*/])(\d+)=(\d+)\.?")
_ANSWER_LINE_RE = re.compile(r"^\s*(?:Answer:|####)(.*)$")
_BOXED = "\\boxed{"
STEP_DELIMITER = "\n\n"


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


def apply_operation(left: int, op: str, right: int) -> int | None:
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
        value = apply_operation(value, op, operand)
    if value is None:
        raise ValueError(f"question leaves the non-negative integers: {question!r}")
    return value


def parse_steps(text: str) -> list[str]:
    """The steps of a solution: its non-blank `"\\n\\n"`-separated segments, stripped."""
    return [segment.strip() for segment in text.split(STEP_DELIMITER) if segment.strip()]


def _question_of(problem: ProblemLike) -> str:
    if isinstance(problem, str):
        return problem
    question = problem.get("question")
    if not isinstance(question, str):
        raise ValueError("problem record has no string 'question'")
    return question


def _step_ok(step: str, value: int, op: str, operand: int) -> bool:
    """Whether `step` is the calculation `value op operand = result` (operands of + and * swap)."""
    expected = apply_operation(value, op, operand)
    found = _STEP_RE.fullmatch(step.replace(" ", ""))
    if found is None or expected is None:
        return False
    left, got_op, right, result = found.groups()
    allowed = {(value, operand)}
    if op in "+*":
        allowed.add((operand, value))
    return got_op == op and (int(left), int(right)) in allowed and int(result) == expected


def check_steps(problem: ProblemLike, solution: str) -> list[bool]:
    """Prefix correctness of each step of `solution` (the assistant's text), answer step too."""
    chain = parse_question(_question_of(problem))
    value: int | None = chain.start
    verdicts: list[bool] = []
    ok = True
    for i, step in enumerate(parse_steps(solution)):
        if ok and i < len(chain.operations):
            op, operand = chain.operations[i]
            ok = value is not None and _step_ok(step, value, op, operand)
            value = apply_operation(value, op, operand) if value is not None else None
        elif ok and i == len(chain.operations):
            ok = value is not None and _boxed(step) == str(value)
        else:
            ok = False
        verdicts.append(ok)
    return verdicts


def _canonical_number(text: str) -> str:
    """`"0032"` -> `"32"`, `"1,200"` -> `"1200"`; other text is returned stripped."""
    cleaned = text.strip().replace(",", "")
    if re.fullmatch(r"\d+", cleaned):
        return str(int(cleaned))
    return cleaned


def _boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces kept), canonicalised; None if none."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return _canonical_number(text[begin:index]) or None
    return None


def extract_answer(text: str) -> str | None:
    """The final answer, canonicalised: the last `\\boxed{}`, else an `Answer:`/`####` line."""
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    for line in text.split("\n"):
        found = _ANSWER_LINE_RE.match(line)
        if found:
            answer = _canonical_number(found.group(1))
            return answer or None
    return None


def _gold_answer(problem: ProblemLike) -> str:
    if not isinstance(problem, str):
        answer = problem.get("answer")
        if isinstance(answer, str | int):
            text = str(answer)
            marked = "####" in text or _BOXED in text
            gold = extract_answer(text) if marked else _canonical_number(text)
            if gold:
                return gold
    return str(solve(_question_of(problem)))


def is_correct(problem: ProblemLike, text: str) -> bool:
    """Whether the final answer in `text` equals the problem's answer (outcome only)."""
    answer = extract_answer(text)
    return answer is not None and answer == _gold_answer(problem)

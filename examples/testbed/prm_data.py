"""Where the PRM is read and what it is taught: step-end token positions and their labels.

The PRM reads `<s>` + question + "\\n" + solution, one token per character. A step's score is the
PRM's output at the newline that ends the step, and its label is the exact checker's verdict
(prefix correctness). The outcome score is the output at the last character of the answer line,
labelled by whether the final answer is right. Both the trainer and the measurements use these
functions, so they read the same positions.

Optionally (`train_prm.py --dense-labels`) training also labels every other character of the
step lines: 1 while the solution so far is a prefix of the canonical solution, else 0. The idea
is to make the PRM compare each written digit with the one the arithmetic calls for; in short
trials (400 steps) it did not yet improve how the PRM ranks samples of the same problem, so it
is off by default.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from verifiers.arithmetic_steps import check_steps, is_correct, parse_question, parse_steps

BOS_OFFSET = 1  # the tokenizer puts <s> before the first character


def prm_text(question: str, solution: str) -> str:
    """The text the PRM scores: the policy's prompt followed by (part of) a solution."""
    return question + "\n" + solution


def step_end_offsets(solution: str) -> list[int]:
    """Character offsets in `solution` of the newline closing each complete step line."""
    offsets: list[int] = []
    position = 0
    for line in parse_steps(solution):
        end = position + len(line)
        if end >= len(solution) or solution[end] != "\n":
            break  # an unfinished last step has no newline to read a score at
        offsets.append(end)
        position = end + 1
    return offsets


def step_positions(question: str, solution: str) -> list[int]:
    """Token positions (BOS included) of each complete step's newline in `prm_text`."""
    base = BOS_OFFSET + len(question) + 1
    return [base + offset for offset in step_end_offsets(solution)]


def outcome_position(question: str, solution: str) -> int | None:
    """Token position of the answer line's last character, if the solution has an answer line."""
    offsets = step_end_offsets(solution)
    start = offsets[-1] + 1 if offsets else 0
    rest = solution[start:]
    if not rest.startswith("Answer:") or "\n" in rest or len(rest) <= len("Answer:"):
        return None
    return BOS_OFFSET + len(question) + 1 + len(solution) - 1


def canonical_steps(question: str) -> str:
    """The step lines of the reference solution, each with its newline."""
    chain = parse_question(question)
    value, lines = chain.start, []
    for op, operand in chain.operations:
        result = {
            "+": value + operand,
            "-": value - operand,
            "*": value * operand,
            "/": value // operand,
        }[op]
        lines.append(f"{value}{op}{operand}={result}\n")
        value = result
    return "".join(lines)


def labelled_positions(
    problem: dict[str, str], solution: str, *, dense: bool = False
) -> list[tuple[int, int]]:
    """(token position, label) pairs: step verdicts, then the outcome verdict if answered.

    With `dense`, every character of the step lines is labelled too (prefix of the canonical
    solution or not); the step newlines keep the checker's verdicts.
    """
    question = problem["question"]
    base = BOS_OFFSET + len(question) + 1
    labels: dict[int, int] = {}
    offsets = step_end_offsets(solution)
    if dense and offsets:
        reference = canonical_steps(question)
        for i in range(offsets[-1]):
            labels[base + i] = int(solution[: i + 1] == reference[: i + 1])
    verdicts = check_steps(problem, solution)
    for pos, ok in zip(step_positions(question, solution), verdicts, strict=False):
        labels[pos] = int(ok)
    outcome = outcome_position(question, solution)
    if outcome is not None:
        labels[outcome] = int(is_correct(problem, solution))
    return sorted(labels.items())

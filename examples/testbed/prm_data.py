"""Where the PRM is read and what it is taught: step-end token positions and their labels.

The PRM reads `<s>` + question + "\\n" + solution, one token per character. A step's score is the
PRM's output at the newline that ends the step, and its label is the exact checker's verdict
(prefix correctness). The outcome score is the output at the last character of the answer line,
labelled by whether the final answer is right. Both the trainer and the measurements use these
functions, so they read the same positions.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from verifiers.arithmetic_steps import check_steps, is_correct, parse_steps

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


def labelled_positions(problem: dict[str, str], solution: str) -> list[tuple[int, int]]:
    """(token position, label) pairs: step verdicts, then the outcome verdict if answered."""
    question = problem["question"]
    verdicts = check_steps(problem, solution)
    pairs = [
        (pos, int(ok))
        for pos, ok in zip(step_positions(question, solution), verdicts, strict=False)
    ]
    outcome = outcome_position(question, solution)
    if outcome is not None:
        pairs.append((outcome, int(is_correct(problem, solution))))
    return pairs

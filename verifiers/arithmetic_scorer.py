"""The testbed's exact step checker as a step-level scorer (``arithmetic_steps``).

It computes the right chain from the question itself (not from the reference), so it is the
perfect PRM for the testbed's arithmetic problems: step i scores 1.0 iff the path is correct
up to and including step i. The answer line is one more step: 1.0 iff every step before it
is correct and the answer equals the problem's. Lines after the answer line score 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.graph import Score
from core.problem import Problem
from core.scoring import Candidate, Scorer
from verifiers.arithmetic_steps import check_steps, is_correct, parse_question, parse_steps


class ArithmeticSteps(Scorer):
    """Exact process reward for the testbed task, one value per step; value = last step."""

    description = "Testbed oracle PRM: exact check of each arithmetic step against the question."
    step_level = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        parse_question(problem.question)  # not a testbed question: the whole batch fails
        record: dict[str, object] = {"question": problem.question}
        if problem.reference is not None:
            record["answer"] = problem.reference
        return [self._score_one(record, c) for c in candidates]

    def _score_one(self, record: dict[str, object], candidate: Candidate) -> Score:
        text = candidate.text
        verdicts = check_steps(record, text)
        values = [1.0 if ok else 0.0 for ok in verdicts]
        remaining = len(candidate.steps) - len(values)
        if remaining > 0:
            answered = len(parse_steps(text)) < len(text.rstrip("\n").split("\n"))
            final_ok = answered and all(verdicts) and is_correct(record, text)
            values.append(1.0 if final_ok else 0.0)
            values.extend([0.0] * (remaining - 1))
        values = values[: len(candidate.steps)]
        return Score(value=values[-1] if values else None, step_values=tuple(values))

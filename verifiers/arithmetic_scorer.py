"""The testbed's exact step checker as a step-level scorer (``arithmetic_steps``).

It computes the right chain from the question itself (not from the reference), so it is the
perfect PRM for the testbed's arithmetic problems. A candidate's step k scores 1.0 iff every
checker step (`"\\n\\n"`-separated, answer step included) written in its steps 1..k is correct
(prefix correctness); a step holding no checker step (blank) keeps the value before it.
"""

from __future__ import annotations

from collections.abc import Sequence

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer
from branchwise.verifiers.arithmetic_steps import check_steps, parse_question


class ArithmeticSteps(Scorer):
    """Exact process reward for the testbed task, one value per step; value = last step."""

    description = "Testbed oracle PRM: exact check of each arithmetic step against the question."
    step_level = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        parse_question(problem.question)  # not a testbed question: the whole batch fails
        record: dict[str, object] = {"question": problem.question}
        if problem.answer is not None:
            record["answer"] = problem.answer
        return [self._score_one(record, c) for c in candidates]

    def _score_one(self, record: dict[str, object], candidate: Candidate) -> Score:
        values: list[float] = []
        written = ""
        for step in candidate.steps:
            written += step
            verdicts = check_steps(record, written)
            values.append(1.0 if (all(verdicts) if verdicts else True) else 0.0)
        return Score(value=values[-1] if values else None, step_values=tuple(values))

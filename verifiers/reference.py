"""Grading against the problem's reference answer (an oracle: for evaluation and coverage)."""

from __future__ import annotations

from collections.abc import Sequence

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer
from branchwise.verifiers.grading import GradingSpec, grade

EXACT = GradingSpec(method="exact")


def answers_match(answer: str | None, reference: str | None) -> bool:
    """Exact match after normalisation (grading's ``exact`` rule); None never matches."""
    return grade(answer, reference, EXACT)


class ReferenceAnswer(Scorer):
    """1.0 when the candidate's final answer equals the reference, else 0.0.

    It reads the reference, so it is an oracle: use it to grade or to measure coverage,
    not to steer a search you report as fair.
    """

    description = "Oracle: 1 if the extracted answer equals the problem's reference answer."
    needs_answer = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        if problem.answer is None:
            raise ValueError(f"problem {problem.id} has no reference answer")
        return [
            Score(value=1.0 if answers_match(c.answer, problem.answer) else 0.0) for c in candidates
        ]


class ReferenceSteps(Scorer):
    """Oracle step scores: step i is 1.0 while the path matches the reference solution.

    Once a step departs from the reference, it and every later step score 0.0. It needs the
    problem's ``solution`` (one step per non-blank line) and is meant for tests and for
    measuring how far a learned PRM is from perfect.
    """

    description = "Oracle PRM: 1 per step while the path follows the reference solution."
    step_level = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        if problem.solution is None:
            raise ValueError(f"problem {problem.id} has no reference solution")
        # one step per non-blank line: "\n"- and "\n\n"-delimited solutions alike
        reference = [line.strip() for line in problem.solution.split("\n") if line.strip()]
        scores = []
        for c in candidates:
            values: list[float] = []
            on_track = True
            for index, step in enumerate(c.steps):
                expected = reference[index] if index < len(reference) else None
                on_track = on_track and step.strip() == expected
                values.append(1.0 if on_track else 0.0)
            scores.append(Score(value=values[-1] if values else None, step_values=tuple(values)))
        return scores

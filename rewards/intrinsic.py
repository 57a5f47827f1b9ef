"""Scores from the policy's own token log-probabilities (no extra model)."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.graph import Score
from orchestrator.problem import Problem
from orchestrator.scoring import Candidate, Scorer


class MeanLogprob(Scorer):
    """Mean log-probability of the generated tokens on the path (higher is more confident).

    Needs token logprobs: set ``sampling.logprobs: 0`` (or more) in the recipe.
    """

    description = "Mean token log-probability of the path (needs sampling.logprobs >= 0)."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            if not c.token_logprobs:
                scores.append(Score(value=None, error="no token logprobs (set sampling.logprobs)"))
                continue
            scores.append(Score(value=sum(c.token_logprobs) / len(c.token_logprobs)))
        return scores

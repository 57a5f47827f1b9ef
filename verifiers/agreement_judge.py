"""An LLM judge of agreement between two solutions: the utility of MBR's ``judge`` option.

Unlike the preference judges in :mod:`verifiers.judges` (which solution is better?), this
one asks whether two solutions reach the same result. The verdict is read from the text
(yes/no) or from the first token's probabilities, asked in both presentation orders and
averaged, so the value is symmetric and MBR asks each unordered pair once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import Field

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, PairwiseScorer
from branchwise.verifiers.judges import JudgeConfig, _Judge
from branchwise.verifiers.judging import JudgeClient, parse_choice

AGREEMENT = (
    "Question: {question}\nSolution A:\n{solution_a}\nSolution B:\n{solution_b}\n"
    "Do A and B reach the same final answer? Answer Yes or No.\nAnswer:"
)


class AgreementJudgeConfig(JudgeConfig):
    template: str | None = Field(
        None, description="Prompt with {question}, {solution_a}, {solution_b}; None: built-in."
    )
    choice_pattern: str = Field(
        r"(?i)\b(yes|no)\b", description="Regex whose first group is yes or no (text mode)."
    )
    yes_words: tuple[str, ...] = Field(
        (" Yes", "Yes", " yes", "yes"), description="Words meaning yes (logprobs mode)."
    )
    no_words: tuple[str, ...] = Field(
        (" No", "No", " no", "no"), description="Words meaning no (logprobs mode)."
    )


class AgreementJudge(_Judge, PairwiseScorer):
    """P(the two solutions agree), from the policy (or its own) engine, both orders averaged.

    Cost: two judge requests per pair. It only compares pairs (``ctx.compare``); asked to
    score single candidates it fails them, since agreement needs two.
    """

    config_model = AgreementJudgeConfig
    description = "LLM judge: do two solutions agree? (pairwise utility for MBR's judge option)"
    symmetric = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        error = f"{self.name}: an agreement judge compares pairs; use it as MBR's judge utility"
        return [Score(value=None, error=error) for _ in candidates]

    async def compare(
        self, problem: Problem, pairs: Sequence[tuple[Candidate, Candidate]]
    ) -> list[Score]:
        client = await self.client()
        return list(await asyncio.gather(*(self._pair(client, problem, a, b) for a, b in pairs)))

    async def _pair(
        self, client: JudgeClient, problem: Problem, a: Candidate, b: Candidate
    ) -> Score:
        try:
            forward, backward = await asyncio.gather(
                self._ask(client, problem, a, b), self._ask(client, problem, b, a)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unreadable verdict fails this pair, never defaults
            return Score(value=None, error=f"{type(exc).__name__}: {exc}")
        return Score(value=(forward + backward) / 2, detail={"orders": [forward, backward]})

    async def _ask(
        self, client: JudgeClient, problem: Problem, a: Candidate, b: Candidate
    ) -> float:
        cfg = self.cfg
        assert isinstance(cfg, AgreementJudgeConfig)
        prompt = (cfg.template or AGREEMENT).format(
            question=problem.question, solution_a=a.text, solution_b=b.text
        )
        async with self._slots:
            completion, prompt = await client.complete(prompt, self.sampling())
        if cfg.read == "text":
            verdict = parse_choice(completion.text, cfg.choice_pattern, ("YES", "NO"))
            return 1.0 if verdict == "YES" else 0.0
        mass = await client.option_mass(
            completion, prompt, {"yes": cfg.yes_words, "no": cfg.no_words}
        )
        return mass["yes"] / (mass["yes"] + mass["no"])

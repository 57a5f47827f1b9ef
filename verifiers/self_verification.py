"""Self-verification: the policy checks a candidate k times, and compares two when asked.

The scorer behind Sample, Scrutinize and Scale (Zhao et al. 2025). A candidate's value is
the share of "correct" verdicts among ``verifications`` independent checks (each its own
seed, derived from the node and the check's index, so a value never depends on request
order). As a pairwise scorer it asks which of two candidates is right, in both orders.
Verdicts that cannot be read are left out; a candidate with none fails.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from pydantic import Field

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, PairwiseScorer
from branchwise.core.seeding import derive_seed
from branchwise.orchestrator.engines.types import SamplingSpec
from branchwise.verifiers.judges import JudgeConfig, _Judge
from branchwise.verifiers.judging import JudgeClient, JudgeParseError, parse_choice

VERIFY = (
    "Question: {question}\nProposed solution:\n{solution}\n"
    "Rewrite the solution rigorously, check every step, and end with a line "
    "'Verdict: correct' or 'Verdict: incorrect'.\n"
)
COMPARE = (
    "Question: {question}\nResponse A:\n{solution_a}\nResponse B:\n{solution_b}\n"
    "The two responses disagree. Check both and say which one is right, ending with "
    "'Better: A' or 'Better: B'.\n"
)


class SelfVerificationConfig(JudgeConfig):
    verifications: int = Field(
        3, ge=1, description="Independent checks per candidate (the paper's k_verif)."
    )
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature of each check.")
    max_tokens: int = Field(256, ge=1, description="Tokens a check or a comparison may write.")
    template: str = Field(VERIFY, description="Check prompt with {question} and {solution}.")
    compare_template: str = Field(
        COMPARE, description="Comparison prompt with {question}, {solution_a}, {solution_b}."
    )
    verdict_pattern: str = Field(
        r"Verdict:\s*(correct|incorrect)",
        description="Regex whose first group is the verdict (the last match counts).",
    )
    choice_pattern: str = Field(
        r"Better:\s*([AB])", description="Regex whose first group names the better response."
    )


class SelfVerification(_Judge, PairwiseScorer[SelfVerificationConfig]):  # type: ignore[misc]
    """Share of positive verdicts over k self-checks; pairwise: P(first is right)."""

    config_model = SelfVerificationConfig
    description = "The policy checks each candidate k times (share of 'correct' verdicts)."
    symmetric = False

    @property
    def _cfg(self) -> SelfVerificationConfig:
        assert isinstance(self.cfg, SelfVerificationConfig)
        return self.cfg

    def sampling(self) -> SamplingSpec:
        return SamplingSpec(max_tokens=self._cfg.max_tokens, temperature=self._cfg.temperature)

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        client = await self.client()
        return list(await asyncio.gather(*(self._checks(client, problem, c) for c in candidates)))

    async def _checks(self, client: JudgeClient, problem: Problem, candidate: Candidate) -> Score:
        cfg = self._cfg
        prompt = cfg.template.format(question=problem.question, solution=candidate.text)
        texts = await asyncio.gather(
            *(
                self._write(
                    client, prompt, derive_seed(cfg.seed, problem.id, candidate.node_id, str(v))
                )
                for v in range(cfg.verifications)
            )
        )
        verdicts: list[bool] = []
        for text in texts:
            found = re.findall(cfg.verdict_pattern, text, flags=re.IGNORECASE)
            if found:
                verdicts.append(str(found[-1]).lower() == "correct")
        detail: dict[str, object] = {"verdicts": verdicts, "checks": len(texts)}
        if not verdicts:
            return Score(value=None, error="no readable verdict", detail=detail)
        return Score(value=sum(verdicts) / len(verdicts), detail=detail)

    async def compare(
        self, problem: Problem, pairs: Sequence[tuple[Candidate, Candidate]]
    ) -> list[Score]:
        client = await self.client()
        return list(await asyncio.gather(*(self._pair(client, problem, a, b) for a, b in pairs)))

    async def _pair(
        self, client: JudgeClient, problem: Problem, first: Candidate, second: Candidate
    ) -> Score:
        cfg = self._cfg
        votes: list[float] = []
        for a, b, a_is_first in ((first, second, True), (second, first, False)):
            prompt = cfg.compare_template.format(
                question=problem.question, solution_a=a.text, solution_b=b.text
            )
            seed = derive_seed(cfg.seed, problem.id, first.node_id, second.node_id, str(a_is_first))
            text = await self._write(client, prompt, seed)
            try:
                choice = parse_choice(text, cfg.choice_pattern, "AB")
            except JudgeParseError:
                continue
            votes.append(1.0 if (choice == "A") == a_is_first else 0.0)
        if not votes:
            return Score(value=None, error="no readable comparison")
        return Score(value=sum(votes) / len(votes))

    async def _write(self, client: JudgeClient, prompt: str, seed: int) -> str:
        """One check's text (its engine tokens are charged to the asking search's usage)."""
        async with self._slots:
            completion, _ = await client.complete(prompt, self.sampling(), seed=seed)
        return completion.text

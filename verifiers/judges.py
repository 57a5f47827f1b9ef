"""LLM judges on any engine: pointwise, pairwise (round robin) and a knockout tournament.

A judge uses the recipe's policy engine (``ScorerResources.engine``) unless its config
names an engine of its own (any registered engine kind), which it starts on first use and
stops in ``aclose``. Prompts are templates with ``{question}`` and ``{solution}`` (or
``{solution_a}``/``{solution_b}``). Pairwise verdicts are asked in both orders and averaged,
which cancels a judge's preference for the first (or second) position. A verdict that
cannot be read is a failed Score carrying the error and the judge's raw output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer, ScorerConfig, ScorerResources
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.engines.config import ENGINES, EngineConfig
from branchwise.orchestrator.engines.types import SamplingSpec
from branchwise.verifiers.judging import (
    JudgeClient,
    JudgeParseError,
    knockout,
    parse_choice,
    parse_score,
)

POINTWISE_SCORE = (
    "Question: {question}\nProposed solution:\n{solution}\n"
    "Rate how likely the solution is correct, from {low} to {high}.\nScore:"
)
POINTWISE_YES = (
    "Question: {question}\nProposed solution:\n{solution}\n"
    "Is the solution correct? Answer Yes or No.\nAnswer:"
)
PAIRWISE = (
    "Question: {question}\nSolution A:\n{solution_a}\nSolution B:\n{solution_b}\n"
    "Which solution is correct? Answer A or B.\nAnswer:"
)


class JudgeConfig(ScorerConfig):
    plumbing: ClassVar[frozenset[str]] = frozenset({"max_concurrency"})
    engine: EngineConfig | None = Field(
        None, description="The judge's own engine (any engine kind); default: the policy's."
    )
    read: Literal["text", "logprobs"] = Field(
        "text", description="text: parse the generated text; logprobs: first-token mass."
    )
    max_tokens: int = Field(16, ge=1, description="Tokens the judge may write (text mode).")
    temperature: float = Field(0.0, ge=0.0, description="Judge sampling temperature.")
    top_k_logprobs: int = Field(20, ge=2, le=20, description="Top-k read in logprobs mode.")
    seed: int = Field(0, description="Judge sampling seed.")
    max_concurrency: int = Field(32, ge=1, description="Judge requests in flight at once.")

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_by_kind(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kind = value.get("kind")
            if not isinstance(kind, str):
                raise ValueError(f"engine.kind: missing; expected one of {ENGINES.names()}")
            return ENGINES.get(kind).model_validate(value)
        return value


class _Judge(Scorer[JudgeConfig]):
    """Shared plumbing: the engine, the client and per-candidate failure handling."""

    cfg: JudgeConfig

    def __init__(self, config: JudgeConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        self.cfg = config
        self._own_engine: Engine | None = None
        self._client: JudgeClient | None = None
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._start_lock = asyncio.Lock()

    async def client(self) -> JudgeClient:
        async with self._start_lock:
            if self._client is None:
                engine = self.resources.engine
                if self.cfg.engine is not None:
                    self._own_engine = self.cfg.engine.build(self.resources.base_dir)
                    engine = await self._own_engine.__aenter__()
                if engine is None:
                    raise ValueError(f"judge {self.name!r} has no engine: set `engine`")
                self._client = JudgeClient(engine, label=self.name, seed=self.cfg.seed)
        return self._client

    def sampling(self) -> SamplingSpec:
        if self.cfg.read == "logprobs":
            return SamplingSpec(max_tokens=1, temperature=0.0, logprobs=self.cfg.top_k_logprobs)
        return SamplingSpec(max_tokens=self.cfg.max_tokens, temperature=self.cfg.temperature)

    async def aclose(self) -> None:
        if self._own_engine is not None:
            await self._own_engine.__aexit__(None, None, None)
            self._own_engine = None
        self._client = None


class PointwiseJudgeConfig(JudgeConfig):
    template: str | None = Field(
        None, description="Prompt with {question}, {solution} (and {low}, {high}); None: built-in."
    )
    low: float = Field(1.0, description="Lowest score the judge may give (text mode).")
    high: float = Field(10.0, description="Highest score (text mode); maps to 1.0.")
    score_pattern: str = Field(
        r"(-?\d+(?:\.\d+)?)", description="Regex whose first group is the score (text mode)."
    )
    yes_words: tuple[str, ...] = Field(
        (" Yes", "Yes", " yes", "yes"), description="Words meaning yes (logprobs mode)."
    )
    no_words: tuple[str, ...] = Field(
        (" No", "No", " no", "no"), description="Words meaning no (logprobs mode)."
    )


class PointwiseJudge(_Judge):
    """Scores each solution alone: a parsed score in [low, high], or P(yes) / (P(yes) + P(no))."""

    config_model = PointwiseJudgeConfig
    description = "LLM judge, one solution at a time: parsed score or P(yes) from logprobs."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        client = await self.client()
        return list(await asyncio.gather(*(self._one(client, problem, c) for c in candidates)))

    async def _one(self, client: JudgeClient, problem: Problem, candidate: Candidate) -> Score:
        cfg = self.cfg
        assert isinstance(cfg, PointwiseJudgeConfig)
        default = POINTWISE_YES if cfg.read == "logprobs" else POINTWISE_SCORE
        prompt = (cfg.template or default).format(
            question=problem.question, solution=candidate.text, low=cfg.low, high=cfg.high
        )
        text = ""
        try:
            async with self._slots:
                completion, prompt = await client.complete(prompt, self.sampling())
            text = completion.text
            if cfg.read == "text":
                return Score(
                    value=parse_score(text, cfg.score_pattern, cfg.low, cfg.high),
                    detail={"judge": text},
                )
            mass = await client.option_mass(
                completion, prompt, {"yes": cfg.yes_words, "no": cfg.no_words}
            )
            value = mass["yes"] / (mass["yes"] + mass["no"])
            return Score(value=value, detail={"p_yes": mass["yes"], "p_no": mass["no"]})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Score(value=None, error=f"{type(exc).__name__}: {exc}", detail={"judge": text})


class PairwiseJudgeConfig(JudgeConfig):
    template: str | None = Field(
        None, description="Prompt with {question}, {solution_a}, {solution_b}; None: built-in."
    )
    choice_pattern: str = Field(
        r"\b([ABab])\b", description="Regex whose first group names the winner (text mode)."
    )
    a_words: tuple[str, ...] = Field((" A", "A"), description="Tokens meaning 'A' (logprobs).")
    b_words: tuple[str, ...] = Field((" B", "B"), description="Tokens meaning 'B' (logprobs).")


class _PairwiseBase(_Judge):
    config_model = PairwiseJudgeConfig

    async def prefer(self, problem: Problem, first: Candidate, second: Candidate) -> float:
        """P(first is better), averaged over both presentation orders."""
        client = await self.client()
        forward, backward = await asyncio.gather(
            self._ask(client, problem, first, second), self._ask(client, problem, second, first)
        )
        return (forward + (1.0 - backward)) / 2.0

    async def _ask(
        self, client: JudgeClient, problem: Problem, a: Candidate, b: Candidate
    ) -> float:
        cfg = self.cfg
        assert isinstance(cfg, PairwiseJudgeConfig)
        prompt = (cfg.template or PAIRWISE).format(
            question=problem.question, solution_a=a.text, solution_b=b.text
        )
        async with self._slots:
            completion, prompt = await client.complete(prompt, self.sampling())
        if cfg.read == "text":
            return 1.0 if parse_choice(completion.text, cfg.choice_pattern, "AB") == "A" else 0.0
        mass = await client.option_mass(completion, prompt, {"A": cfg.a_words, "B": cfg.b_words})
        return mass["A"] / (mass["A"] + mass["B"])


class PairwiseJudge(_PairwiseBase):
    """Round robin: each solution's value is its mean win probability against the others.

    Cost: N(N-1)/2 pairs, each asked in both orders. A pair the judge cannot read is left
    out of both means; a solution with no readable pair fails. One solution alone fails too
    (there is nothing to compare it with).
    """

    description = "LLM judge, round robin over the batch: mean P(win) in both orders."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        n = len(candidates)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        results = await asyncio.gather(
            *(self.prefer(problem, candidates[i], candidates[j]) for i, j in pairs),
            return_exceptions=True,
        )
        wins: list[list[float]] = [[] for _ in range(n)]
        errors: list[str] = []
        for (i, j), outcome in zip(pairs, results, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                errors.append(f"{type(outcome).__name__}: {outcome}")
                continue
            wins[i].append(outcome)
            wins[j].append(1.0 - outcome)
        scores = []
        for i in range(n):
            if not wins[i]:
                reason = errors[0] if errors else "no other solution to compare with"
                scores.append(Score(value=None, error=f"no readable comparison: {reason}"))
            else:
                scores.append(
                    Score(value=sum(wins[i]) / len(wins[i]), detail={"comparisons": len(wins[i])})
                )
        return scores


class TournamentJudge(_PairwiseBase):
    """Knockout over the batch: N-1 comparisons (each in both orders) in ~log2 N rounds.

    Value = rounds won / rounds played by the whole bracket, so the winner alone has 1.0.
    Values are relative to the batch: call it once on the final pool (scores are memoised
    per node). A solution eliminated by an unreadable comparison gets a failed Score.
    """

    description = "LLM judge knockout tournament over the batch (both orders per match)."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        async def compare(i: int, j: int) -> float:
            return await self.prefer(problem, candidates[i], candidates[j])

        bracket = await knockout(len(candidates), compare)
        rounds = max(bracket.rounds, 1)
        scores = []
        for i, _ in enumerate(candidates):
            detail: dict[str, object] = {"wins": bracket.wins.get(i, 0), "rounds": bracket.rounds}
            if i in bracket.eliminated_by:
                detail["eliminated_by"] = candidates[bracket.eliminated_by[i]].node_id
            if i in bracket.failures:
                scores.append(Score(value=None, error=bracket.failures[i], detail=detail))
            else:
                value = 1.0 if i == bracket.winner else bracket.wins.get(i, 0) / rounds
                scores.append(Score(value=value, detail=detail))
        return scores


__all__ = ["JudgeParseError", "PairwiseJudge", "PointwiseJudge", "TournamentJudge"]

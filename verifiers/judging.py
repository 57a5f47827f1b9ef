"""The machinery under the LLM judges: asking an engine, reading its verdict, brackets.

A judge's output is read in one of two ways: parsed from the generated text (a score, or the
letter of the better solution), or read from the log-probabilities of the first generated
token (P("yes") against P("no"), P("A") against P("B")). Whatever cannot be read raises
:class:`JudgeParseError`; callers turn that into a failed Score, never a default value.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from branchwise.core.errors import ScorerError
from branchwise.core.scorer_spend import charge
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.engines.types import Completion, GenerationRequest, SamplingSpec


class JudgeParseError(ScorerError):
    """The judge answered, but not in a form the parser accepts."""


class JudgeClient:
    """Sends judge prompts to one engine, with request ids unique within the client."""

    def __init__(self, engine: Engine, *, label: str, seed: int = 0) -> None:
        self.engine = engine
        self.label = label
        self.seed = seed
        self._counter = itertools.count()
        self._word_ids: dict[tuple[str, str], int | None] = {}

    async def complete(
        self, prompt: str, sampling: SamplingSpec, seed: int | None = None
    ) -> tuple[Completion, str]:
        """One completion of ``prompt``; returns it with the prompt text (for word ids).

        ``seed``: this request's own seed (repeated verdicts on one prompt); default the
        client's."""
        ids = await self.engine.tokenize(prompt)
        request = GenerationRequest(
            request_id=f"judge:{self.label}:{next(self._counter)}",
            prompt_token_ids=ids,
            sampling=sampling.model_copy(update={"seed": self.seed if seed is None else seed}),
        )
        result = await self.engine.generate(request)
        charge(
            prompt=result.prompt_tokens or len(ids),
            cached=result.cached_prompt_tokens,
            generated=sum(len(c.token_ids) for c in result.completions),
        )
        if not result.completions:
            raise ScorerError(f"judge engine returned no completion for {request.request_id}")
        return result.completions[0], prompt

    async def first_token_id(self, prompt: str, word: str) -> int | None:
        """Id of the first token ``word`` starts with when it directly follows ``prompt``.

        Tokenizing the prompt with and without the word and taking the first new id keeps
        BOS tokens and merges across the boundary right for any tokenizer.
        """
        key = (prompt[-64:], word)
        if key not in self._word_ids:
            base = await self.engine.tokenize(prompt)
            full = await self.engine.tokenize(prompt + word)
            same = full[: len(base)] == base and len(full) > len(base)
            self._word_ids[key] = full[len(base)] if same else None
        return self._word_ids[key]

    async def option_mass(
        self, completion: Completion, prompt: str, options: dict[str, Sequence[str]]
    ) -> dict[str, float]:
        """Probability mass of each option's words among the first position's top-k."""
        if not completion.top_logprobs or not completion.top_token_ids:
            raise JudgeParseError("judge returned no top-k logprobs with token ids")
        tops = dict(zip(completion.top_token_ids[0], completion.top_logprobs[0], strict=False))
        ids: dict[str, set[int]] = {}
        for option, words in options.items():
            found = [await self.first_token_id(prompt, w) for w in words]
            ids[option] = {i for i in found if i is not None}
        # A first token shared by two options (" Yes" and " No" both start with " " under a
        # character tokenizer) says nothing about which one the judge meant: drop it.
        shared = {i for a, b in itertools.combinations(ids.values(), 2) for i in a & b}
        mass = {
            option: sum(math.exp(tops[i]) for i in found - shared if i in tops)
            for option, found in ids.items()
        }
        if not any(mass.values()):
            raise JudgeParseError(
                f"none of the options {sorted(options)} is among the judge's top-k tokens"
            )
        return mass


def parse_score(text: str, pattern: str, low: float, high: float) -> float:
    """The first number ``pattern`` finds in ``text``, mapped from [low, high] to [0, 1]."""
    found = re.search(pattern, text)
    if found is None:
        raise JudgeParseError(f"no score in judge output {text[:200]!r}")
    raw = found.group(1) if found.groups() else found.group(0)
    try:
        value = float(raw)
    except ValueError:
        raise JudgeParseError(f"judge score {raw!r} is not a number") from None
    if not low <= value <= high:
        raise JudgeParseError(f"judge score {value} outside [{low}, {high}]")
    return (value - low) / (high - low)


def parse_choice(text: str, pattern: str, options: Sequence[str]) -> str:
    """The option ``pattern``'s first group names in ``text``; an error if it names none."""
    found = re.search(pattern, text)
    choice = found.group(1) if found and found.groups() else None
    if choice is None or choice.upper() not in options:
        raise JudgeParseError(f"judge named no option of {list(options)} in {text[:200]!r}")
    return choice.upper()


Compare = Callable[[int, int], Awaitable[float]]
"""Async P(item i beats item j); raising means the comparison failed."""


@dataclass
class Bracket:
    """The outcome of a knockout: who won, how far each went, which matches failed."""

    winner: int | None
    rounds: int
    wins: dict[int, int] = field(default_factory=dict)
    eliminated_by: dict[int, int] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    comparisons: int = 0


async def knockout(count: int, compare: Compare) -> Bracket:
    """Single-elimination over ``count`` items: count-1 matches in ceil(log2 count) rounds.

    Items are paired in index order each round (0-1, 2-3, ...); an odd one out gets a bye.
    All matches of a round run concurrently. A match whose comparison fails eliminates the
    later item with the error recorded (the earlier one advances: a walkover, never a
    guessed verdict); a tie (exactly 0.5) goes to the earlier item.
    """
    alive = list(range(count))
    bracket = Bracket(winner=None, rounds=0, wins=dict.fromkeys(alive, 0))
    while len(alive) > 1:
        pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
        results = await asyncio.gather(*(compare(a, b) for a, b in pairs), return_exceptions=True)
        survivors: list[int] = []
        for (a, b), outcome in zip(pairs, results, strict=True):
            bracket.comparisons += 1
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                bracket.failures[b] = f"{type(outcome).__name__}: {outcome}"
                winner, loser = a, b
            else:
                winner, loser = (a, b) if outcome >= 0.5 else (b, a)
                bracket.wins[winner] += 1
            bracket.eliminated_by[loser] = winner
            survivors.append(winner)
        if len(alive) % 2:
            survivors.append(alive[-1])
        alive = survivors
        bracket.rounds += 1
    bracket.winner = alive[0] if alive else None
    return bracket

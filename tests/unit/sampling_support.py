"""Scripted policies and helpers for the sampling-level strategy tests.

The policies control what the scripted engine writes *and* its top-k logprobs, so a test can
make traces confident or uncertain, or put a high-entropy token at a chosen spot.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from branchwise.core.problem import Problem
from branchwise.orchestrator.context import SearchContext, SearchSettings
from branchwise.orchestrator.engines.scripted import (
    EOS,
    Continuation,
    ReferencePolicy,
    ScriptedEngine,
)
from branchwise.orchestrator.engines.types import SamplingSpec
from branchwise.orchestrator.ledger import Budget, Ledger
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.verifiers.answers import AnswerSpec
from tests.conftest import teach
from tests.unit.strategy_configs import recipe_extras

PEAKED = (-0.01, -5.0, -6.0, -7.0, -8.0)
"""A confident position: token confidence 5.2, top-5 entropy ~0.06 nats."""
FLAT = (-1.55, -1.6, -1.6, -1.65, -1.65)
"""An uncertain position: token confidence 1.6, top-5 entropy ~1.61 nats (ln 5 = 1.609)."""


class ChoicePolicy:
    """Writes one of a few fixed solutions, picked at random by weight.

    Each option is ``(text, weight, confident)``; confident options get :data:`PEAKED`
    top-k logprobs at every character, the others :data:`FLAT`. Only for sampling from the
    prompt (it ignores what a prompt already holds).
    """

    def __init__(self, options: Sequence[tuple[str, float, bool]]) -> None:
        self.options = list(options)

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        weights = [w for _, w, _ in self.options]
        text, _, confident = rng.choices(self.options, weights=weights)[0]
        top = PEAKED if confident else FLAT
        body = text + EOS
        return Continuation(body, (top[0],) * len(body), (top,) * len(body))


class HardSpotPolicy:
    """Replays reference solutions without errors; uncertain only at chosen spots.

    The spot is the first character after ``=`` on line ``hard_line`` (0-based) of the
    solution: the first digit of that step's result. Everywhere else the top-k is peaked.
    ``hard_line=None`` makes every position uncertain. With ``hard_questions``, only those
    questions have hard spots; the others are peaked everywhere.
    """

    def __init__(self, hard_line: int | None, hard_questions: set[str] | None = None) -> None:
        self.reference = ReferencePolicy({}, error_rate=0.0)
        self.hard_line = hard_line
        self.hard_questions = hard_questions  # None: every question has the hard spot

    def learn(self, solutions: dict[str, str]) -> None:
        self.reference.solutions.update(solutions)

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        cont = self.reference.continue_text(prompt, rng)
        question = next((q for q in self.reference.solutions if q in prompt), None)
        written = prompt.split(question, 1)[1][1:] if question else ""
        easy = self.hard_questions is not None and question not in self.hard_questions
        tops = []
        for ch in cont.text:
            line = written.split("\n")[-1]
            hard = not easy and (
                self.hard_line is None
                or (written.count("\n") == self.hard_line and line.endswith("="))
            )
            tops.append(FLAT if hard else PEAKED)
            written += ch
        return Continuation(cont.text, cont.logprobs, tuple(tops))


class LearningEngine(ScriptedEngine):
    """A scripted engine whose custom policy also learns reference solutions."""

    def learn(self, solutions: dict[str, str]) -> None:  # type: ignore[override]
        learn = getattr(self.policy, "learn", None)
        if learn is not None:
            learn(solutions)
        else:
            super().learn(solutions)


def run_strategy(
    strategy: dict[str, Any],
    problems: list[Problem],
    engine: ScriptedEngine,
    *,
    seed: int = 0,
    budget: dict[str, Any] | None = None,
    scorers: list[dict[str, Any]] | None = None,
    max_tokens: int = 64,
    concurrency: int = 64,
) -> list[ProblemResult]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": strategy,
            **recipe_extras(strategy),
            "scorers": scorers or [],
            "sampling": {"temperature": 1.0, "max_tokens": max_tokens},
            "budget": budget or {},
            "seed": seed,
            "concurrency": concurrency,
        }
    )

    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go())


async def make_context(
    engine: ScriptedEngine,
    problem: Problem,
    *,
    budget: Budget | None = None,
    max_tokens: int = 64,
    seed: int = 0,
) -> SearchContext:
    """A search context on ``engine`` for one problem, as the runner would build it."""
    if problem.solution is not None:
        engine.learn({problem.question: problem.solution})
    prompt = problem.question + "\n"
    return SearchContext(
        problem=problem,
        prompt=prompt,
        prompt_token_ids=await engine.tokenize(prompt),
        settings=SearchSettings(
            engine=engine,
            sampling=SamplingSpec(max_tokens=max_tokens),
            step_delimiter="\n",
            answer_spec=AnswerSpec(),
            seed=seed,
        ),
        ledger=Ledger(budget or Budget()),
    )


def generated_in_graph(result: ProblemResult) -> int:
    assert result.graph is not None
    return sum(n.generated_tokens for n in result.graph.nodes() if n.parent_id)


class WholeSampleEngine:
    """The same policy, but every sample arrives in one piece (an engine that cannot stream,
    or one that outran its reader): the fork must not depend on it."""

    name = "whole-sample"

    def __init__(self, inner: ScriptedEngine) -> None:
        self.inner = inner
        self.eos_token_id = getattr(inner, "eos_token_id", None)

    async def generate(self, request):  # type: ignore[no-untyped-def]
        return await self.inner.generate(request)

    async def tokenize(self, text):  # type: ignore[no-untyped-def]
        return await self.inner.tokenize(text)

    async def decode(self, token_ids):  # type: ignore[no-untyped-def]
        return await self.inner.decode(token_ids)

    async def tokenize_chat(self, messages, *, chat_template=None):  # type: ignore[no-untyped-def]
        return await self.inner.tokenize_chat(messages, chat_template=chat_template)

    def learn(self, solutions):  # type: ignore[no-untyped-def]
        self.inner.learn(solutions)

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return self

    async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
        return None


def graph_shape(results: list[ProblemResult]) -> list[tuple[object, ...]]:
    """One result's graph without what timing may change: the text of aborted nodes."""
    [result] = results
    assert result.graph is not None and result.error is None
    nodes = result.graph.to_dict()["nodes"]
    assert isinstance(nodes, list)
    return [
        (n["id"], n["status"], n["forced"], n["text"] if n["status"] != "aborted" else "")
        for n in nodes
    ]

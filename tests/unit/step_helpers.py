"""Helpers for the step-level strategy tests: a runner and a test-only noisy PRM."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from branchwise.core.graph import Node, Score, SearchGraph
from branchwise.core.problem import Problem
from branchwise.core.scorers import SCORERS, Candidate, Scorer, ScorerConfig
from branchwise.core.seeding import derive_seed
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.graph_view import GraphView
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.verifiers.reference import ReferenceSteps
from tests.conftest import teach
from tests.unit.strategy_configs import recipe_extras

ORACLES: list[dict[str, Any]] = [
    {"kind": "reference_steps", "name": "prm"},
    {"kind": "reference_answer", "name": "oracle"},
]


class NoisyPRMConfig(ScorerConfig):
    noise: float = Field(0.2, ge=0, le=0.5, description="Half-width of the uniform noise.")
    seed: int = Field(0, description="Noise seed.")


class NoisyPRM(Scorer):
    """Test-only PRM: the oracle step score moved toward 0.5 by a deterministic amount.

    A step on track scores in [1 - 2*noise, 1], a step off track in [0, 2*noise]; the noise
    depends only on the problem, the step index and the text so far, so it is reproducible.
    """

    config_model = NoisyPRMConfig
    description = "Test-only: the oracle PRM with deterministic noise."
    step_level = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        assert isinstance(self.config, NoisyPRMConfig) and problem.solution is not None
        noise = self.config.noise
        reference = [line.strip() for line in problem.solution.strip().split("\n")]
        out = []
        for c in candidates:
            values: list[float] = []
            on_track = True
            for i, step in enumerate(c.steps):
                on_track = on_track and i < len(reference) and step.strip() == reference[i]
                seed = derive_seed(self.config.seed, problem.id, "".join(c.steps[: i + 1]))
                jitter = 2 * noise * (seed % 10_000) / 10_000
                values.append(1.0 - jitter if on_track else jitter)
            out.append(Score(value=values[-1] if values else None, step_values=tuple(values)))
        return out


class SlowPRMConfig(ScorerConfig):
    slow_under: list[str] = Field(default_factory=list, description="Subtrees scored slowly.")
    delay: float = Field(0.05, ge=0, description="Seconds each slow batch takes.")


class SlowPRM(ReferenceSteps):
    """Test-only: the oracle PRM, but slow on nodes under the given subtrees."""

    config_model = SlowPRMConfig
    description = "Test-only: the oracle PRM, slow under some subtrees."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        assert isinstance(self.config, SlowPRMConfig)
        slow = self.config.slow_under
        if any(c.node_id == s or c.node_id.startswith(s + ".") for c in candidates for s in slow):
            await asyncio.sleep(self.config.delay)
        return await super().score(problem, candidates)


for _name, _cls in (("noisy_prm", NoisyPRM), ("slow_prm", SlowPRM)):
    if _name not in SCORERS.names():
        SCORERS.register(_name, _cls)


def run_strategy(
    strategy: dict[str, Any],
    problems: list[Problem],
    *,
    error_rate: float = 0.3,
    seed: int = 0,
    budget: dict[str, Any] | None = None,
    scorers: list[dict[str, Any]] | None = None,
    max_tokens: int = 48,
    seconds_per_token: float = 0.0,
) -> tuple[list[ProblemResult], ScriptedEngine]:
    """Run one recipe on the scripted engine; returns results and the engine (for requests)."""
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": strategy,
            **recipe_extras(strategy),
            "scorers": scorers if scorers is not None else ORACLES,
            "sampling": {"temperature": 1.0, "max_tokens": max_tokens},
            "budget": budget or {},
            "seed": seed,
        }
    )
    engine = ScriptedEngine(error_rate=error_rate, seconds_per_token=seconds_per_token)
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go()), engine


def accuracy(results: list[ProblemResult]) -> float:
    return sum(bool(r.correct) for r in results) / len(results)


def mean_tokens(results: list[ProblemResult]) -> float:
    return sum(float(r.usage["generated_tokens"]) for r in results) / len(results)


class TreePort(GraphView):
    """A stored graph with the port's rng and prune: enough of a port for a unit test that
    calls one step of a strategy's bookkeeping directly."""

    def __init__(self, graph: SearchGraph, rng: random.Random | None = None) -> None:
        super().__init__(graph)
        self.rng = rng or random.Random(0)

    def prune(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            self.graph.mark(node.id, "pruned")

"""Failures stay failures: engine time-outs, aborted generations, stray cancellations, weights."""

from __future__ import annotations

import asyncio

from branchwise.core.graph import Node
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.types import Completion, GenerationRequest, GenerationResult
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.strategies.selection import weighted_vote
from tests.conftest import make_problem, scripted_recipe, teach


class _TimingOut(ScriptedEngine):
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        raise TimeoutError("socket read timed out")


class _Aborting(ScriptedEngine):
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = await super().generate(request)
        cut = Completion(token_ids=(70, 71), text="Answer: 4", finish_reason="abort")
        return GenerationResult((cut,) * request.n, prompt_tokens=result.prompt_tokens)


class _StrayCancel(ScriptedEngine):
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # raises CancelledError without the task being cancelled
        raise AssertionError("unreachable")


def _solve(engine: ScriptedEngine, **extra: object) -> list[ProblemResult]:
    recipe = scripted_recipe({"name": "self_consistency", "n": 3}, **extra)

    problems = [make_problem(0), make_problem(1)]
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(asyncio.wait_for(go(), timeout=10))


def test_an_engine_timeout_is_a_failed_problem_not_an_empty_answer() -> None:
    results = _solve(_TimingOut())
    assert all(r.error is not None and "EngineTimeout" in r.error for r in results)


def test_aborted_generations_never_vote() -> None:
    results = _solve(_Aborting())
    for result in results:
        assert result.answer is None
        assert result.graph is not None
        children = result.graph.children("r")
        assert children and all(result.graph.state(c.id).status == "failed" for c in children)


def test_a_stray_cancellation_fails_its_problem_and_the_run_finishes() -> None:
    results = _solve(_StrayCancel())
    assert len(results) == 2 and all("CancelledError" in (r.error or "") for r in results)


def test_the_prompt_budget_is_never_overshot() -> None:
    results = _solve(ScriptedEngine(), budget={"max_prompt_tokens": 100})
    for result in results:
        assert result.error is None
        assert result.usage["prompt_tokens"] <= 100


def test_a_weighted_vote_without_positive_weight_names_no_answer() -> None:
    nodes = [
        Node(id=f"r.{i}", parent_id="r", depth=1, token_ids=(), text="", answer=a, terminal=True)
        for i, a in enumerate(["4", "5", "4"])
    ]
    picked = weighted_vote(nodes, lambda _n: 0.0)
    assert picked.answer is None and picked.detail["no_positive_weight"]
    assert weighted_vote(nodes, lambda n: 1.0 if n.answer == "5" else 0.2).answer == "5"

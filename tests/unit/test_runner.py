"""The orchestrator: concurrency, failure isolation, cancellation, determinism."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer, ScorerConfig, ScorerResources
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, scripted_recipe, teach


def _run(
    recipe_strategy: dict[str, object],
    problems: list[Problem],
    engine: ScriptedEngine,
    **extra: object,
) -> list[ProblemResult]:
    recipe = scripted_recipe(recipe_strategy, **extra)
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go())


def test_self_consistency_beats_single_samples_on_scripted_policy() -> None:
    problems = [make_problem(i) for i in range(40)]
    engine = ScriptedEngine(error_rate=0.15)
    voted = _run({"name": "self_consistency", "n": 15}, problems, engine)
    single = _run({"name": "self_consistency", "n": 1}, problems, ScriptedEngine(error_rate=0.15))
    acc_voted = sum(bool(r.correct) for r in voted) / len(problems)
    acc_single = sum(bool(r.correct) for r in single) / len(problems)
    assert acc_voted > acc_single + 0.15


def test_best_of_n_with_oracle_finds_covered_answers() -> None:
    problems = [make_problem(i) for i in range(10)]
    results = _run(
        {"name": "best_of_n", "n": 8, "scorer": "oracle"},
        problems,
        ScriptedEngine(error_rate=0.3),
        scorers=[{"kind": "reference_answer", "name": "oracle"}],
    )
    for result in results:
        assert result.graph is not None
        covered = any(n.answer == result.reference for n in result.graph.terminals())
        assert result.correct == covered


def test_a_failing_problem_does_not_stop_the_rest() -> None:
    problems = [make_problem(i) for i in range(6)]
    engine = ScriptedEngine(error_rate=0.0, fail_after=3)
    results = _run({"name": "self_consistency", "n": 2}, problems, engine, concurrency=1)
    assert [r.error is None for r in results] == [True] * 3 + [False] * 3
    assert all("scripted engine died" in (r.error or "") for r in results[3:])
    assert all(r.correct for r in results[:3])


def test_problems_run_concurrently_up_to_the_limit() -> None:
    problems = [make_problem(i) for i in range(8)]
    engine = ScriptedEngine(error_rate=0.0, seconds_per_token=0.002)
    start = time.monotonic()
    _run({"name": "self_consistency", "n": 1}, problems, engine, concurrency=8)
    parallel = time.monotonic() - start
    start = time.monotonic()
    _run(
        {"name": "self_consistency", "n": 1},
        problems,
        ScriptedEngine(error_rate=0.0, seconds_per_token=0.002),
        concurrency=1,
    )
    serial = time.monotonic() - start
    assert parallel < serial / 2


def test_cancelling_a_run_aborts_engine_requests() -> None:
    problems = [make_problem(i) for i in range(4)]
    engine = ScriptedEngine(error_rate=0.0, seconds_per_token=0.05)
    teach(engine, problems)
    recipe = scripted_recipe({"name": "self_consistency", "n": 2})

    async def go() -> None:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            task = asyncio.create_task(orchestrator.run(problems))
            await asyncio.sleep(0.1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert len(engine.aborted) == 4
    assert engine.generated_tokens == 0


class _Exploding(Scorer):
    description = "raises"

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        raise RuntimeError("model on fire")


def test_a_failing_scorer_marks_nodes_and_the_search_goes_on() -> None:
    # best-of-N asks the scorer about every sample; "boom" raises on the whole batch
    recipe = scripted_recipe(
        {"name": "best_of_n", "n": 3, "scorer": "boom"},
        scorers=[{"kind": "mean_logprob", "name": "boom"}],  # replaced by the exploding one
        sampling={"max_tokens": 64, "logprobs": 0},
    )
    problem = make_problem(0)
    engine = ScriptedEngine(error_rate=0.0)
    teach(engine, [problem])
    scorer = _Exploding(ScorerConfig(kind="exploding"), ScorerResources())

    async def go() -> ProblemResult:
        async with Orchestrator(recipe, engine=engine, scorers={"boom": scorer}) as orchestrator:
            return await orchestrator.solve(problem)

    result = asyncio.run(go())
    assert result.error is None  # the search went on
    assert result.graph is not None
    nodes = result.graph.terminals()
    assert len(nodes) == 3 and all(n.answer == problem.reference for n in nodes)
    for node in nodes:
        score = result.graph.score(node.id, "boom")
        assert score is not None and not score.ok and score.value is None
        assert score.error is not None and "model on fire" in score.error
    assert result.usage["scorer_calls"] == 3
    # a failed score is never read as a plausible value, so no sample wins on it
    assert result.detail["failed_scores"] == 3 and result.answer is None


def test_same_seed_same_results_different_seed_differs() -> None:
    problems = [make_problem(i) for i in range(6)]
    a = _run({"name": "self_consistency", "n": 5}, problems, ScriptedEngine(), seed=1)
    b = _run({"name": "self_consistency", "n": 5}, problems, ScriptedEngine(), seed=1)
    c = _run({"name": "self_consistency", "n": 5}, problems, ScriptedEngine(), seed=2)
    traces = [[r.graph.to_dict() for r in run if r.graph] for run in (a, b, c)]
    assert traces[0] == traces[1]
    assert traces[0] != traces[2]

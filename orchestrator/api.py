"""The Python API: ``await search(question, recipe)`` and a sync bridge for notebooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from branchwise.core.problem import Problem
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.recipe import Recipe, load_recipe
from branchwise.orchestrator.result_warnings import log_warnings
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator

log = logging.getLogger("branchwise")


def _as_recipe(recipe: Recipe | str | Path) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def _as_problem(problem: Problem | str, index: int = 0) -> Problem:
    return problem if isinstance(problem, Problem) else Problem(id=f"q{index}", question=problem)


async def search(
    problem: Problem | str, recipe: Recipe | str | Path, *, engine: Engine | None = None
) -> ProblemResult:
    """Search one problem with a recipe (a Recipe or a YAML path)."""
    (result,) = await search_many([problem], recipe, engine=engine)
    return result


async def search_many(
    problems: Sequence[Problem | str],
    recipe: Recipe | str | Path,
    *,
    engine: Engine | None = None,
) -> list[ProblemResult]:
    """Search many problems concurrently on one engine; results in input order."""
    items = [_as_problem(p, i) for i, p in enumerate(problems)]
    async with Orchestrator(_as_recipe(recipe), engine=engine) as orchestrator:
        results = await orchestrator.run(items)
    log_warnings(results, log)
    return results


def search_sync(
    problems: Problem | str | Sequence[Problem | str], recipe: Recipe | str | Path
) -> list[ProblemResult]:
    """The only sync bridge: runs :func:`search_many` in a fresh event loop.

    Inside a running loop (a Jupyter cell) that loop cannot be re-entered, so the search runs
    on a fresh loop in a worker thread while the caller waits.
    """
    items: Sequence[Problem | str] = (
        [problems] if isinstance(problems, (Problem, str)) else problems
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(search_many(items, recipe))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="search_sync") as pool:
        return pool.submit(asyncio.run, search_many(items, recipe)).result()

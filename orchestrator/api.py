"""The Python API: ``await search(question, recipe)``, and ``search_sync`` for sync callers.

Each call starts and stops an engine; to keep one up across calls, use
:class:`~branchwise.orchestrator.session.Session`. An engine started here writes its own
output to a file (``orchestrator.engine_log``), as the CLI does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from branchwise.core.problem import Problem
from branchwise.orchestrator.engine_log import (
    default_log_path,
    engine_output_to_file,
    uses_vllm,
)
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.recipe import Recipe
from branchwise.orchestrator.result_warnings import log_warnings
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.session import Session, as_problems, as_recipe

log = logging.getLogger("branchwise")


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
    items = as_problems(problems)
    parsed = as_recipe(recipe)
    log_path = default_log_path() if engine is None and uses_vllm(parsed) else None
    with engine_output_to_file(log_path):
        orchestrator = Orchestrator(parsed, engine=engine)
        await orchestrator.__aenter__()
    try:
        results = await orchestrator.run(items)
    except BaseException as exc:
        await orchestrator.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await orchestrator.__aexit__(None, None, None)
    log_warnings(results, log)
    return results


def search_sync(
    problems: Problem | str | Sequence[Problem | str], recipe: Recipe | str | Path
) -> list[ProblemResult]:
    """Search from sync code (a script, or a notebook cell whose loop is running).

    A one-call :class:`Session`: the engine runs on the session's own loop and stops before
    this returns.
    """
    items: Sequence[Problem | str] = (
        [problems] if isinstance(problems, (Problem, str)) else problems
    )
    with Session(recipe) as session:
        return session.map(items)

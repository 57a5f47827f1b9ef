"""``branchwise eval ... --executor ray``: one evaluation spread over Ray workers.

Every worker is a Ray task that builds the recipe's engine itself (an in-process vLLM on its
node, or the recipe's ``openai`` fleet shared by all of them) and runs the ordinary
evaluation loop against the same results store. The store's claims decide who runs what: a
worker claims a problem before it runs it and writes it only under its claim, so each
problem is stored once, a worker that dies leaves its claims to go stale and be taken over,
and rerunning the command resumes. Per-problem seeds make the results those of a
single-process run with the same seed.

The store is one SQLite file: on several nodes its folder must be on storage every node
reaches with working file locks (not every network file system has them).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from branchwise.core.errors import BranchwiseError
from branchwise.core.problem import Problem
from branchwise.orchestrator.store import DatasetIdentity, ResultStore


@dataclass(frozen=True)
class RayJob:
    """What every worker needs to rebuild the evaluation (plain data, sent to the workers)."""

    recipe_path: str
    overrides: dict[str, Any]
    problems: list[dict[str, Any]]
    dataset: DatasetIdentity
    folder: str
    with_graph: bool


def run_on_ray(
    recipe_path: Path,
    overrides: dict[str, Any],
    problems: list[Problem],
    dataset: DatasetIdentity,
    folder: Path,
    *,
    workers: int,
    gpus_per_worker: float = 0.0,
    address: str | None,
    with_graph: bool,
) -> None:
    """Run ``workers`` Ray tasks over one store; returns when every problem is stored."""
    try:
        import ray
    except ImportError:
        raise BranchwiseError(
            "--executor ray needs Ray: pip install 'branchwise[ray]' (or `pip install ray`)"
        ) from None
    job = RayJob(
        recipe_path=str(recipe_path.resolve()),
        overrides=overrides,
        problems=[p.model_dump(mode="json") for p in problems],
        dataset=dataset,
        folder=str(folder.resolve()),
        with_graph=with_graph,
    )
    # workers import this package the way the driver does (for a source checkout too)
    source = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    started_here = not ray.is_initialized()
    if started_here:
        target = address or os.environ.get("RAY_ADDRESS")
        if target:
            ray.init(address=target, runtime_env=runtime_env, log_to_driver=False)
        else:  # a local cluster on this machine, for this run only
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                runtime_env=runtime_env,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
    try:
        task: Any = ray.remote(num_cpus=1, num_gpus=gpus_per_worker, max_retries=2)(work)
        ray.get([task.remote(job, index) for index in range(workers)])
    except ray.exceptions.RayError as exc:
        raise BranchwiseError(f"a Ray worker failed: {exc}") from None
    finally:
        if started_here:
            ray.shutdown()


def work(job: RayJob, index: int) -> int:
    """One worker: the evaluation loop on its own engine; returns how many problems it ran."""
    from branchwise.orchestrator.evaluate import Console, evaluate
    from branchwise.orchestrator.recipe import load_recipe

    recipe = load_recipe(job.recipe_path, job.overrides or None)
    problems = [Problem.model_validate(p) for p in job.problems]
    with open(os.devnull, "w") as quiet, ResultStore(job.folder) as store:
        outcome = asyncio.run(
            evaluate(
                recipe,
                problems,
                store,
                job.dataset,
                Console(out=quiet, err=quiet),
                with_graph=job.with_graph,
                quiet=True,
            )
        )
    return outcome.ran

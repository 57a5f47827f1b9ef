"""The testbed, in one place, for the benchmarks that compare systems on it.

The repository's own particle-filter recipe names the policy, the prompt, the step
delimiter, the answer format and the grading; when the testbed changes, that recipe changes
and these benchmarks follow it. The PRM is always the testbed's exact step checker (what a
peer system can run too, and what keeps the comparison about orchestration, not scoring).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchwise.orchestrator.recipe import Recipe, load_recipe, parse_recipe
from branchwise.orchestrator.runner import Orchestrator

if TYPE_CHECKING:
    from branchwise.core.problem import Problem
    from branchwise.orchestrator.engines.base import Engine
    from branchwise.orchestrator.results import ProblemResult

ROOT = Path(__file__).resolve().parent.parent
TESTBED_RECIPE = ROOT / "examples" / "recipes" / "particle_filter_prm.yaml"
STEP_MAX_TOKENS = 32
MAX_DEPTH = 10
BEAM_WIDTH = 2
STEP_STRATEGIES = ("particle_filter", "beam_search")


ORACLE_PRM = {"kind": "arithmetic_steps", "name": "prm"}


def base_recipe() -> Recipe:
    """The testbed recipe with the exact checker as its PRM."""
    return load_recipe(TESTBED_RECIPE, {"scorers": [ORACLE_PRM]})


def policy_path(base: Recipe) -> Path:
    return Path(base.resolve(base.engine.model)).resolve()  # type: ignore[attr-defined]


def eval_path(base: Recipe) -> Path:
    assert base.dataset is not None
    return base.resolve(base.dataset.path).resolve()


def strategy_config(strategy: str, budget: int, scorer: str) -> dict[str, Any]:
    """Equal budgets: ``budget`` particles, beam paths (width x expansions) or samples."""
    configs: dict[str, dict[str, Any]] = {
        "particle_filter": {
            "name": "particle_filter", "particles": budget, "scorer": scorer,
            "aggregation": "last", "max_depth": MAX_DEPTH, "step_max_tokens": STEP_MAX_TOKENS,
            "final": "best",
        },
        "beam_search": {
            "name": "beam_search", "beam_width": BEAM_WIDTH, "expansions": budget // BEAM_WIDTH,
            "scorer": scorer, "aggregation": "last", "max_depth": MAX_DEPTH,
            "step_max_tokens": STEP_MAX_TOKENS, "final": "best",
        },
        "self_consistency": {"name": "self_consistency", "n": budget},
    }  # fmt: skip
    return configs[strategy]


def testbed_recipe(
    base: Recipe, strategy: str, budget: int, engine: dict[str, Any], concurrency: int, seed: int
) -> Recipe:
    """The testbed recipe with another strategy, engine, concurrency and seed."""
    data = base.model_dump(mode="json", exclude_none=True)
    data["strategy"] = strategy_config(strategy, budget, ORACLE_PRM["name"])
    data["engine"] = engine
    data["concurrency"] = concurrency
    data["seed"] = seed
    data.pop("dataset", None)
    data.pop("base_dir", None)
    return parse_recipe(data, base_dir=base.base_dir)


@dataclass(frozen=True)
class TimedRun:
    """One search over a problem set: its results, wall time and this process's CPU time."""

    results: list[ProblemResult]
    wall_seconds: float
    cpu_seconds: float

    @property
    def generated_tokens(self) -> int:
        return sum(int(r.usage["generated_tokens"]) for r in self.results)

    @property
    def correct(self) -> int:
        return sum(bool(r.correct) for r in self.results)


async def timed_run(
    recipe: Recipe, problems: list[Problem], engine: Engine | None = None
) -> TimedRun:
    """Solve ``problems`` with ``recipe`` (on ``engine``, else the recipe's own); a benchmark
    whose run had a failed problem measured nothing, so that ends it with the first error."""
    cpu, wall = time.process_time(), time.perf_counter()
    async with Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(problems)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    errors = [r.error for r in results if r.error]
    if errors:
        raise SystemExit(f"{recipe.strategy.name} run failed: {errors[0]}")
    return TimedRun(results, wall, cpu)

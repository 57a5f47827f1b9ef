"""The testbed, in one place, for the benchmarks that compare systems on it.

The repository's own particle-filter recipe names the policy, the prompt, the step
delimiter, the answer format and the grading; when the testbed changes, that recipe changes
and these benchmarks follow it. The PRM is always the testbed's exact step checker (what a
peer system can run too, and what keeps the comparison about orchestration, not scoring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.recipe import Recipe, load_recipe, parse_recipe

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

"""Branchwise orchestrator: engines, search graph, budgets, recipes and the async runner.

The public API is imported lazily (PEP 562): ``from orchestrator import search`` loads the
runner, but importing a lower module such as ``orchestrator.engines.types`` does not, so the
layers below the orchestrator (``core``, ``rewards``, ``strategies``, ``verifiers``) can use
the engine types without pulling in the recipe, the runner and every strategy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.errors import (
        BranchwiseError,
        BudgetExhausted,
        DatasetError,
        EngineError,
        EngineTimeout,
        RecipeError,
        RegistryError,
        ScorerError,
    )
    from core.graph import Node, Score, SearchGraph
    from core.problem import Problem
    from orchestrator.api import search, search_many, search_sync
    from orchestrator.budget import Budget, Usage
    from orchestrator.context import SearchContext
    from orchestrator.engines.types import Completion, GenerationRequest, SamplingSpec
    from orchestrator.recipe import Recipe, load_recipe, parse_recipe
    from orchestrator.results import ProblemResult
    from orchestrator.runner import Orchestrator
    from orchestrator.store import ResultStore

_EXPORTS = {
    "BranchwiseError": "core.errors",
    "BudgetExhausted": "core.errors",
    "DatasetError": "core.errors",
    "EngineError": "core.errors",
    "EngineTimeout": "core.errors",
    "RecipeError": "core.errors",
    "RegistryError": "core.errors",
    "ScorerError": "core.errors",
    "Node": "core.graph",
    "Score": "core.graph",
    "SearchGraph": "core.graph",
    "Problem": "core.problem",
    "search": "orchestrator.api",
    "search_many": "orchestrator.api",
    "search_sync": "orchestrator.api",
    "Budget": "orchestrator.budget",
    "Usage": "orchestrator.budget",
    "SearchContext": "orchestrator.context",
    "Completion": "orchestrator.engines.types",
    "GenerationRequest": "orchestrator.engines.types",
    "SamplingSpec": "orchestrator.engines.types",
    "Recipe": "orchestrator.recipe",
    "load_recipe": "orchestrator.recipe",
    "parse_recipe": "orchestrator.recipe",
    "ProblemResult": "orchestrator.results",
    "ResultStore": "orchestrator.store",
    "Orchestrator": "orchestrator.runner",
}

__all__ = [
    "BranchwiseError",
    "Budget",
    "BudgetExhausted",
    "Completion",
    "DatasetError",
    "EngineError",
    "EngineTimeout",
    "GenerationRequest",
    "Node",
    "Orchestrator",
    "Problem",
    "ProblemResult",
    "Recipe",
    "RecipeError",
    "RegistryError",
    "ResultStore",
    "SamplingSpec",
    "Score",
    "ScorerError",
    "SearchContext",
    "SearchGraph",
    "Usage",
    "load_recipe",
    "parse_recipe",
    "search",
    "search_many",
    "search_sync",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Branchwise: test-time scaling as search graphs over a vLLM engine.

One import name: the layers live in ``branchwise.core``, ``branchwise.rewards``,
``branchwise.strategies``, ``branchwise.verifiers`` and ``branchwise.orchestrator``. The public
API is imported lazily (PEP 562): ``from branchwise import search`` loads the runner, but
``import branchwise`` alone (or a lower module such as ``branchwise.core.graph``) does not, so
a lower layer never pulls in the recipe, the runner and every strategy.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from branchwise.core.answer_spec import AnswerSpec
    from branchwise.core.errors import (
        BranchwiseError,
        BudgetExhausted,
        DatasetError,
        EngineError,
        EngineTimeout,
        RecipeError,
        RegistryError,
        ScorerError,
    )
    from branchwise.core.graph import Node, Score, SearchGraph
    from branchwise.core.problem import Problem
    from branchwise.orchestrator.api import search, search_many, search_sync
    from branchwise.orchestrator.context import SearchContext
    from branchwise.orchestrator.datasets import FieldMap, load_problems
    from branchwise.orchestrator.engines.types import Completion, GenerationRequest, SamplingSpec
    from branchwise.orchestrator.ledger import Budget, Usage
    from branchwise.orchestrator.recipe import Recipe, load_recipe, parse_recipe
    from branchwise.orchestrator.results import ProblemResult, SearchWarning
    from branchwise.orchestrator.runner import Orchestrator
    from branchwise.orchestrator.session import Session
    from branchwise.orchestrator.store import ResultStore
    from branchwise.verifiers.answers import extract_answer
    from branchwise.verifiers.grading import GradingSpec, grade

try:
    __version__ = version("branchwise")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "BranchwiseError": "branchwise.core.errors",
    "BudgetExhausted": "branchwise.core.errors",
    "DatasetError": "branchwise.core.errors",
    "EngineError": "branchwise.core.errors",
    "EngineTimeout": "branchwise.core.errors",
    "RecipeError": "branchwise.core.errors",
    "RegistryError": "branchwise.core.errors",
    "ScorerError": "branchwise.core.errors",
    "Node": "branchwise.core.graph",
    "Score": "branchwise.core.graph",
    "SearchGraph": "branchwise.core.graph",
    "AnswerSpec": "branchwise.core.answer_spec",
    "Problem": "branchwise.core.problem",
    "search": "branchwise.orchestrator.api",
    "search_many": "branchwise.orchestrator.api",
    "search_sync": "branchwise.orchestrator.api",
    "Budget": "branchwise.orchestrator.ledger",
    "Usage": "branchwise.orchestrator.ledger",
    "SearchContext": "branchwise.orchestrator.context",
    "FieldMap": "branchwise.orchestrator.datasets",
    "load_problems": "branchwise.orchestrator.datasets",
    "Completion": "branchwise.orchestrator.engines.types",
    "GenerationRequest": "branchwise.orchestrator.engines.types",
    "SamplingSpec": "branchwise.orchestrator.engines.types",
    "Recipe": "branchwise.orchestrator.recipe",
    "load_recipe": "branchwise.orchestrator.recipe",
    "parse_recipe": "branchwise.orchestrator.recipe",
    "ProblemResult": "branchwise.orchestrator.results",
    "SearchWarning": "branchwise.orchestrator.results",
    "ResultStore": "branchwise.orchestrator.store",
    "Session": "branchwise.orchestrator.session",
    "Orchestrator": "branchwise.orchestrator.runner",
    "extract_answer": "branchwise.verifiers.answers",
    "GradingSpec": "branchwise.verifiers.grading",
    "grade": "branchwise.verifiers.grading",
}

__all__ = [
    "AnswerSpec",
    "BranchwiseError",
    "Budget",
    "BudgetExhausted",
    "Completion",
    "DatasetError",
    "EngineError",
    "EngineTimeout",
    "FieldMap",
    "GenerationRequest",
    "GradingSpec",
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
    "SearchWarning",
    "Session",
    "Usage",
    "__version__",
    "extract_answer",
    "grade",
    "load_problems",
    "load_recipe",
    "parse_recipe",
    "search",
    "search_many",
    "search_sync",
]
assert sorted(__all__) == sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'branchwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Branchwise orchestrator: engines, search graph, budgets, recipes and the async runner."""

from orchestrator.api import search, search_many, search_sync
from orchestrator.budget import Budget, Usage
from orchestrator.context import SearchContext
from orchestrator.engines.types import Completion, GenerationRequest, SamplingSpec
from orchestrator.errors import (
    BranchwiseError,
    BudgetExhausted,
    DatasetError,
    EngineError,
    EngineTimeout,
    RecipeError,
    RegistryError,
    ScorerError,
)
from orchestrator.graph import Node, Score, SearchGraph
from orchestrator.problem import Problem
from orchestrator.recipe import Recipe, load_recipe, parse_recipe
from orchestrator.results import ProblemResult, ResultStore
from orchestrator.runner import Orchestrator

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

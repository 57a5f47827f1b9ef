"""Fitting OSCA's allocation: how many samples each sampling configuration should get.

OSCA (Zhang et al. 2025, "Scaling LLM Inference with Optimized Sample Compute Allocation")
samples every configuration on training problems, estimates from those samples how well each
mix of configurations would do, and searches the integer splits of the sample budget for the
best mix. Here the training problems are a val split: :func:`collect_outcomes` runs an
``osca`` recipe with every configuration sampled ``samples`` times, :func:`fit_allocation`
searches the splits, and :func:`fragment` is the recipe's ``strategy`` section with the mix
(``branchwise allocate RECIPE --out FRAGMENT.yaml`` does all three on the recipe's dataset).

Two objectives, each an estimate from the collected samples (drawn with replacement):
``coverage``: the chance that some sample is right (pass@k; exact, from each problem's
per-configuration solve rate, as in the paper), for a strategy that picks with a verifier;
``vote``: the chance that the majority answer is right (Monte Carlo, fixed seed, the same
draws for every split), for the strategy's default ``selection: vote``.
The search: every split when there are at most ``exact_limit`` of them, else hill climbing
(moves of ``step`` samples between two configurations, the step halving when no move helps)
from the best single configuration and from the even split.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from branchwise.core.errors import RecipeError
from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import field_map, load_problems
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.recipe import Recipe, load_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.verifiers.grading import grade

Objective = Literal["coverage", "vote"]
Sample = tuple[str | None, bool]
"""One collected sample: its answer (None: none extracted) and whether it is right."""
Outcomes = dict[str, dict[str, list[Sample]]]
"""Problem id -> configuration name -> its samples."""


@dataclass(frozen=True)
class Fit:
    """A fitted allocation, its estimated objective, and the best single configuration's."""

    allocation: dict[str, int]
    value: float
    objective: Objective
    best_single: str
    best_single_value: float
    splits_evaluated: int
    search: Literal["exact", "hill_climbing"]
    problems: int


async def collect_outcomes(
    recipe: Recipe, problems: Sequence[Problem], samples: int, *, engine: Engine | None = None
) -> tuple[Outcomes, dict[str, float]]:
    """Sample every configuration of an ``osca`` recipe ``samples`` times per problem.

    Returns the outcomes and each configuration's mean generated tokens per sample. Problems
    need references (what is right is what the fit learns from).
    """
    names = _configuration_names(recipe)
    if samples < 1:
        raise RecipeError(f"samples: {samples}; expected at least 1 per configuration")
    missing = [p.id for p in problems if p.reference is None]
    if missing:
        raise RecipeError(f"problems without a reference cannot train an allocation: {missing[:5]}")
    strategy = recipe.strategy.model_copy(update={"allocation": dict.fromkeys(names, samples)})
    collecting = recipe.model_copy(update={"strategy": strategy})
    async with Orchestrator(collecting, engine=engine) as orchestrator:
        results = await orchestrator.run(list(problems))
    return outcomes_of(results, recipe), tokens_per_sample(results)


def outcomes_of(results: Iterable[ProblemResult], recipe: Recipe) -> Outcomes:
    """Each finished sample's answer and correctness, by problem and configuration label."""
    outcomes: Outcomes = {}
    for result in results:
        if result.graph is None or result.error is not None:
            continue
        by_config = outcomes.setdefault(result.problem_id, {})
        for node in result.graph.terminals():
            if node.prompt_variant is None:
                continue
            right = node.answer is not None and bool(
                grade(node.answer, result.reference or "", recipe.grading)
            )
            by_config.setdefault(node.prompt_variant, []).append((node.answer, right))
    return outcomes


def tokens_per_sample(results: Iterable[ProblemResult]) -> dict[str, float]:
    """Mean generated tokens of a sample under each configuration (its cost)."""
    tokens: dict[str, list[int]] = {}
    for result in results:
        if result.graph is None:
            continue
        for node in result.graph.children("r"):
            if node.prompt_variant is not None:
                tokens.setdefault(node.prompt_variant, []).append(node.generated_tokens)
    return {name: round(sum(v) / len(v), 1) for name, v in sorted(tokens.items()) if v}


def fit_allocation(
    outcomes: Outcomes,
    budget: int,
    *,
    objective: Objective = "vote",
    draws: int = 256,
    seed: int = 0,
    exact_limit: int = 2000,
) -> Fit:
    """The split of ``budget`` samples over the configurations with the best estimate."""
    if budget < 1:
        raise RecipeError(f"budget: {budget}; expected at least 1 sample")
    names = sorted({name for by_config in outcomes.values() for name in by_config})
    if not names:
        raise RecipeError("no collected samples to fit an allocation from")
    table = _Table(outcomes, names, budget, draws, seed)
    evaluate = table.coverage if objective == "coverage" else table.vote
    memo: dict[tuple[int, ...], float] = {}

    def value(split: tuple[int, ...]) -> float:
        if split not in memo:
            memo[split] = evaluate(split)
        return memo[split]

    singles = [tuple(budget if j == i else 0 for j in range(len(names))) for i in range(len(names))]
    best_single = max(range(len(names)), key=lambda i: (value(singles[i]), -i))
    search: Literal["exact", "hill_climbing"]
    if math.comb(budget + len(names) - 1, len(names) - 1) <= exact_limit:
        search = "exact"
        best = max(_compositions(budget, len(names)), key=lambda s: (value(s), s))
    else:
        search = "hill_climbing"
        even = [budget // len(names)] * len(names)
        for i in range(budget - sum(even)):
            even[i] += 1
        starts = [singles[best_single], tuple(even)]
        best = max((_climb(s, value) for s in starts), key=lambda s: (value(s), s))
    return Fit(
        allocation={name: k for name, k in zip(names, best, strict=True) if k},
        value=round(value(best), 4),
        objective=objective,
        best_single=names[best_single],
        best_single_value=round(value(singles[best_single]), 4),
        splits_evaluated=len(memo),
        search=search,
        problems=len(table.problems),
    )


def evaluate_allocation(
    outcomes: Outcomes,
    allocation: Mapping[str, int],
    *,
    objective: Objective = "vote",
    draws: int = 256,
    seed: int = 0,
) -> float:
    """The estimated objective of ``allocation`` on ``outcomes`` (e.g. problems held out)."""
    names = sorted({name for by_config in outcomes.values() for name in by_config})
    split = tuple(allocation.get(name, 0) for name in names)
    table = _Table(outcomes, names, max(sum(split), 1), draws, seed)
    split = tuple(allocation.get(name, 0) for name in names)
    return round(table.coverage(split) if objective == "coverage" else table.vote(split), 4)


def fragment(recipe: Recipe, fit: Fit) -> dict[str, Any]:
    """The recipe's ``strategy`` section with the fitted allocation in place."""
    strategy = recipe.strategy.model_dump(mode="json", exclude_defaults=True)
    strategy["name"] = recipe.strategy.name
    strategy["allocation"] = dict(fit.allocation)
    return {"strategy": strategy}


def allocate_command(
    recipe_path: Path,
    out: Path,
    *,
    samples: int,
    budget: int,
    objective: Objective,
    limit: int | None = None,
) -> int:
    """``branchwise allocate``: collect on the recipe's dataset, fit, write the fragment."""
    recipe = load_recipe(recipe_path)
    _configuration_names(recipe)
    if recipe.dataset is None:
        raise RecipeError(f"{recipe_path}: no `dataset` to fit on (name a val split)")
    spec = recipe.dataset
    problems = load_problems(
        recipe.resolve(spec.path),
        format=spec.format,
        fields=field_map(spec.format, spec.fields),
        limit=limit or spec.limit,
    )
    outcomes, tokens = asyncio.run(collect_outcomes(recipe, problems, samples))
    fit = fit_allocation(outcomes, budget, objective=objective, seed=recipe.seed)
    header = (
        f"# fitted by `branchwise allocate` on {len(problems)} problems of {spec.path}: "
        f"{samples} samples per configuration, {budget} to split, objective {objective}\n"
        f"# estimate {fit.value} (best single configuration, {fit.best_single}: "
        f"{fit.best_single_value}); {fit.search} search over {fit.splits_evaluated} splits\n"
        f"# mean generated tokens per sample: {json.dumps(tokens)}\n"
    )
    out.write_text(header + yaml.safe_dump(fragment(recipe, fit), sort_keys=False))
    print(
        f"{out}: allocation {json.dumps(fit.allocation)}, estimated {objective} {fit.value} "
        f"(best single {fit.best_single}: {fit.best_single_value})"
    )
    return 0


def _configuration_names(recipe: Recipe) -> list[str]:
    configurations = getattr(recipe.strategy, "configurations", None)
    if recipe.strategy.name != "osca" or not isinstance(configurations, dict):
        raise RecipeError(
            f"strategy.name: {recipe.strategy.name!r}; fitting an allocation needs an osca "
            "recipe (its configurations are what gets mixed)"
        )
    return sorted(configurations)


def _compositions(total: int, parts: int) -> Iterable[tuple[int, ...]]:
    """Every way to write ``total`` as ``parts`` non-negative integers (stars and bars)."""
    for bars in combinations(range(total + parts - 1), parts - 1):
        edges = (-1, *bars, total + parts - 1)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(parts))


def _climb(start: tuple[int, ...], value: Any) -> tuple[int, ...]:
    current = start
    step = max(1, sum(start) // 4)
    while step >= 1:
        moves = [
            tuple(k - step if j == a else k + step if j == b else k for j, k in enumerate(current))
            for a in range(len(current))
            for b in range(len(current))
            if a != b and current[a] >= step
        ]
        better = max(moves, key=lambda s: (value(s), s), default=current)
        if value(better) > value(current):
            current = better
        else:
            step //= 2
    return current


class _Table:
    """Per problem and configuration: solve rates, and the same random draws for every split.

    For the vote each (problem, configuration) gets ``draws`` sequences of ``most`` samples
    drawn once from its answer frequencies; a split taking ``k`` samples of it reads the
    first ``k`` of each sequence (common random numbers: two splits differ only by the
    samples they take, not by luck), and ties break by noise drawn once per problem.
    """

    def __init__(
        self, outcomes: Outcomes, names: list[str], most: int, draws: int, seed: int
    ) -> None:
        rng = np.random.default_rng(seed)
        self.problems = sorted(p for p, by in outcomes.items() if any(by.values()))
        self.solve = np.zeros((len(self.problems), len(names)))
        # per problem: (configs, most + 1, draws, answers) counts of the first k draws
        self.counts: list[np.ndarray] = []
        self.noise: list[np.ndarray] = []
        self.right: list[np.ndarray] = []  # which answers are right
        for i, problem in enumerate(self.problems):
            by_config = outcomes[problem]
            vocab = sorted({a for s in by_config.values() for a, _ in s if a is not None})
            index = {a: j for j, a in enumerate(vocab)}
            right = np.zeros(len(vocab), dtype=bool)
            counts = np.zeros((len(names), most + 1, draws, len(vocab)), dtype=np.int16)
            for c, name in enumerate(names):
                samples = by_config.get(name, [])
                if not samples:
                    continue  # never sampled: its samples count as unanswered
                self.solve[i, c] = sum(ok for _, ok in samples) / len(samples)
                for answer, ok in samples:
                    if answer is not None and ok:
                        right[index[answer]] = True
                # a sample drawn with replacement; -1: it has no answer
                coded = np.array([index[a] if a is not None else -1 for a, _ in samples])
                drawn = coded[rng.integers(len(samples), size=(draws, most))]
                for k in range(most):
                    hit = drawn[:, k] >= 0
                    counts[c, k + 1] = counts[c, k]
                    counts[c, k + 1, np.flatnonzero(hit), drawn[hit, k]] += 1
            self.counts.append(counts)
            self.noise.append(rng.random((draws, len(vocab))) * 0.5)
            self.right.append(right)

    def coverage(self, split: tuple[int, ...]) -> float:
        """Mean over problems of 1 - prod_c (1 - p_c)^x_c."""
        miss = np.prod((1.0 - self.solve) ** np.asarray(split, dtype=float), axis=1)
        return float(np.mean(1.0 - miss))

    def vote(self, split: tuple[int, ...]) -> float:
        """Mean over problems of the chance that a majority vote of the split is right."""
        total = 0.0
        for counts, noise, right in zip(self.counts, self.noise, self.right, strict=True):
            if not right.any():
                continue  # no configuration ever got it right: the vote cannot either
            votes = sum(counts[c, k] for c, k in enumerate(split) if k)
            if isinstance(votes, int):
                continue  # an empty split
            winner = np.argmax(votes + noise, axis=1)
            answered = votes.sum(axis=1) > 0
            total += float(np.mean(right[winner] & answered))
        return total / max(len(self.counts), 1)

"""Honest metrics of a stored run, and the paired test that compares two runs.

Accuracy counts every problem of the run: a failed problem is a wrong answer (and is also
counted apart). Its 95% interval is Wilson's score interval. pass@k uses the unbiased
estimator of Chen et al. (2021) over each problem's finished samples (its *candidates*);
accuracy at N re-selects from the first N samples (in canonical path order) with the
strategy's own rule, for strategies whose samples are independent (self-consistency,
best-of-N): per-node seeds follow the path, so the first N samples are exactly those of a run
with n = N, and one run of n samples gives the curve for every N <= n.
Two runs on the same problems are compared problem by problem (``paired_stats``: McNemar's
exact test and a bootstrap interval of the difference).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from branchwise.core.graph import ROOT_ID, SearchGraph
from branchwise.orchestrator.graph_view import GraphView
from branchwise.orchestrator.paired_stats import PairedTest, paired_test
from branchwise.orchestrator.recipe import Recipe
from branchwise.strategies.base import STRATEGIES
from branchwise.verifiers.grading import GradingSpec, grade

Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (0, 0 when ``total`` is 0)."""
    if total == 0:
        return 0.0, 0.0
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn from n, c of them correct, is correct)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def subset_answers(
    graph: SearchGraph | None, recipe: Recipe, reference: str | None
) -> dict[int, dict[str, Any]]:
    """The answer (and its correctness) the strategy would pick from its first N samples.

    For N = 1, 2, 4, ... up to n, by the strategy's own :meth:`~Strategy.select` on a view
    of the tree that holds only those samples; empty for strategies whose samples are not
    independent (step searches, adaptive stopping), where a prefix of the samples is no
    smaller run.
    """
    if graph is None:
        return {}
    strategy = STRATEGIES.get(recipe.strategy.name)(recipe.strategy)
    if not strategy.samples_independent:
        return {}
    samples = graph.children(ROOT_ID)
    out: dict[int, dict[str, Any]] = {}
    for n in _powers_of_two_upto(len(samples)):
        view = GraphView(graph, aggregation=recipe.aggregation(), samples=samples[:n])
        answer = strategy.select(view).answer
        correct = None if reference is None else grade(answer, reference, recipe.grading)
        out[n] = {"answer": answer, "correct": correct}
    return out


def candidates_of(
    graph: SearchGraph | None, reference: str | None, grading: GradingSpec
) -> list[dict[str, Any]]:
    """Every finished sample of a search, in path order, with its answer and correctness."""
    if graph is None:
        return []
    verdicts: dict[str | None, bool | None] = {}
    out: list[dict[str, Any]] = []
    for node in graph.terminals(include_pruned=True):
        if node.answer not in verdicts:
            verdicts[node.answer] = (
                None if reference is None else grade(node.answer, reference, grading)
            )
        out.append({"node": node.id, "answer": node.answer, "correct": verdicts[node.answer]})
    return out


@dataclass
class RunMetrics:
    """The numbers ``summary``, ``compare`` and ``report`` print, for one stored run."""

    problems: int
    failed: int
    graded: int
    correct: int
    accuracy: float
    ci95: tuple[float, float]
    pass_at: dict[int, float] = field(default_factory=dict)
    accuracy_at: dict[int, float] = field(default_factory=dict)
    tokens_per_problem: float = 0.0
    generated_tokens: int = 0
    scorer_generated_tokens: int = 0
    """Tokens LLM scorers (judges, self-verification) generated for the run's searches."""
    latency: dict[str, float] = field(default_factory=dict)
    prefix_cache_hit_rate: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "problems": self.problems,
            "failed": self.failed,
            "graded": self.graded,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "ci95": list(self.ci95),
            "pass_at": self.pass_at,
            "accuracy_at": self.accuracy_at,
            "tokens_per_problem": self.tokens_per_problem,
            "generated_tokens": self.generated_tokens,
            "scorer_generated_tokens": self.scorer_generated_tokens,
            "latency": self.latency,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "errors": self.errors,
        }


def _powers_of_two_upto(n: int) -> list[int]:
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return [*out, n] if n else []


def run_metrics(records: Sequence[dict[str, Any]]) -> RunMetrics:
    """Metrics over stored records (``ResultStore.records``)."""
    total = len(records)
    failed = [r for r in records if r.get("error")]
    graded = [r for r in records if r.get("reference") is not None]
    correct = sum(1 for r in graded if r.get("correct"))
    metrics = RunMetrics(
        problems=total,
        failed=len(failed),
        graded=len(graded),
        correct=correct,
        accuracy=correct / len(graded) if graded else 0.0,
        ci95=wilson_interval(correct, len(graded)),
    )
    metrics.errors = dict(Counter(_error_kind(r["error"]) for r in failed).most_common())
    # pass@k: over graded problems; one with no finished sample counts as 0 for every k
    sampled = [r.get("candidates") or [] for r in graded]
    widest = min((len(c) for c in sampled if c), default=0)
    if graded and widest:
        for k in _powers_of_two_upto(widest):
            metrics.pass_at[k] = sum(
                pass_at_k(len(c), sum(1 for x in c if x["correct"]), k) if c else 0.0
                for c in sampled
            ) / len(graded)
    subsets = [r.get("subsets") or {} for r in graded]
    sizes = set.intersection(*(set(x) for x in subsets)) if graded and all(subsets) else set()
    for n in sorted(sizes, key=int):
        hits = sum(1 for x in subsets if x[n]["correct"])
        metrics.accuracy_at[int(n)] = hits / len(graded)
    generated = [int((r.get("usage") or {}).get("generated_tokens", 0)) for r in records]
    metrics.generated_tokens = sum(generated)
    metrics.tokens_per_problem = sum(generated) / total if total else 0.0
    metrics.scorer_generated_tokens = sum(
        int((r.get("usage") or {}).get("scorer_generated_tokens", 0)) for r in records
    )
    latencies = [float(r["latency"]) for r in records if r.get("latency") is not None]
    metrics.latency = {f"p{q}": round(percentile(latencies, q), 4) for q in (50, 90, 99)}
    prompt = sum(int((r.get("usage") or {}).get("prompt_tokens", 0)) for r in records)
    cached = sum(int((r.get("usage") or {}).get("cached_prompt_tokens", 0)) for r in records)
    metrics.prefix_cache_hit_rate = cached / prompt if prompt else 0.0
    return metrics


def _error_kind(error: str) -> str:
    return error.split("\n", 1)[0][:200]


def correctness(records: Sequence[dict[str, Any]]) -> dict[str, bool]:
    """Each graded problem's correctness by id; a failed problem counts as wrong."""
    return {r["problem_id"]: bool(r.get("correct")) for r in records if r.get("reference")}


def compare_runs(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> PairedTest:
    """Pair two runs' records by problem id (failed = wrong) and test the difference."""
    return paired_test(correctness(a), correctness(b))

"""Metrics: failures stay in the denominator, Wilson intervals, pass@k, re-voted N, McNemar."""

from __future__ import annotations

from typing import Any

import pytest

from branchwise.orchestrator.metrics import (
    compare_runs,
    pass_at_k,
    percentile,
    run_metrics,
    wilson_interval,
)
from branchwise.orchestrator.paired_stats import mcnemar_exact


def _record(
    pid: str, correct: bool, answers: list[tuple[str, bool]], **extra: Any
) -> dict[str, Any]:
    return {
        "problem_id": pid,
        "reference": "1",
        "correct": correct,
        "error": extra.pop("error", None),
        "candidates": [{"answer": a, "correct": c} for a, c in answers],
        "usage": extra.pop(
            "usage", {"generated_tokens": 10, "prompt_tokens": 4, "cached_prompt_tokens": 1}
        ),
        "latency": extra.pop("latency", 1.0),
        **extra,
    }


def test_wilson_interval_matches_known_values() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    lo, hi = wilson_interval(19, 40)
    assert lo == pytest.approx(0.3294, abs=1e-4) and hi == pytest.approx(0.6250, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0


def test_mcnemar_exact_p_values() -> None:
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_failed_problems_stay_in_the_denominator_and_are_counted_apart() -> None:
    records = [
        _record("a", True, [("1", True)]),
        _record("b", False, [], error="EngineError: gone"),
        _record("c", False, [("2", False)]),
        _record("d", True, [("1", True)]),
    ]
    m = run_metrics(records)
    assert (m.problems, m.failed, m.correct, m.graded) == (4, 1, 2, 4)
    assert m.accuracy == 0.5
    assert m.errors == {"EngineError: gone": 1}
    assert m.prefix_cache_hit_rate == pytest.approx(0.25)


def test_accuracy_at_n_comes_from_the_stored_subsets() -> None:
    def subsets(*correct: bool) -> dict[str, dict[str, object]]:
        return {str(2**i): {"answer": "x", "correct": c} for i, c in enumerate(correct)}

    records = [
        _record("a", True, [("2", False), ("1", True)], subsets=subsets(False, True)),
        _record("b", True, [("1", True), ("1", True)], subsets=subsets(True, True)),
    ]
    m = run_metrics(records)
    assert m.accuracy_at == {1: 0.5, 2: 1.0}
    assert m.pass_at[1] == pytest.approx((0.5 + 1) / 2)
    records[1]["subsets"] = {}  # a strategy without subsets: no curve rather than half of one
    assert run_metrics(records).accuracy_at == {}


def test_percentiles_and_compare() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    a = [_record(f"p{i}", True, []) for i in range(8)]
    b = [_record(f"p{i}", i < 1, []) for i in range(8)]
    c = compare_runs(a, b)
    assert (c.shared, c.only_a, c.only_b) == (8, 7, 0)
    assert c.significant and c.p_value == pytest.approx(2 / 128)
    assert c.difference == pytest.approx(7 / 8) and c.ci95[0] <= 7 / 8 <= c.ci95[1]


def test_the_summary_counts_what_llm_scorers_generated_apart() -> None:
    from branchwise.orchestrator.report import summary_text

    judged = {"problem_id": "p0", "answer": "1", "reference": "1", "correct": True,
              "usage": {"generated_tokens": 40, "scorer_generated_tokens": 90}}  # fmt: skip
    metrics = run_metrics([judged, {**judged, "problem_id": "p1"}])
    assert metrics.generated_tokens == 80 and metrics.scorer_generated_tokens == 180
    assert "(80 in all; LLM scorers generated 180 more)" in summary_text(metrics)
    plain = run_metrics([{**judged, "usage": {"generated_tokens": 40}}])
    assert "LLM scorers" not in summary_text(plain)

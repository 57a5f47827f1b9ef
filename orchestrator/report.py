"""Summaries of stored runs: the text ``summary`` prints and the ``compare`` verdict."""

from __future__ import annotations

from branchwise.orchestrator.metrics import RunMetrics
from branchwise.orchestrator.paired_stats import PairedTest


def summary_text(metrics: RunMetrics, *, title: str = "") -> str:
    """A short human-readable summary of one run's metrics."""
    m = metrics
    lines = [title] if title else []
    lines.append(f"problems: {m.problems}  failed: {m.failed}")
    if m.graded:
        lo, hi = m.ci95
        lines.append(
            f"accuracy: {m.correct}/{m.graded} = {m.accuracy:.3f}  (95% CI {lo:.3f}-{hi:.3f}; "
            f"failed problems count as wrong)"
        )
    if m.pass_at:
        lines.append("pass@k: " + "  ".join(f"@{k} {v:.3f}" for k, v in m.pass_at.items()))
    if m.accuracy_at:
        lines.append(
            "accuracy from the first N samples (same rule): "
            + "  ".join(f"N={n} {v:.3f}" for n, v in m.accuracy_at.items())
        )
    lat = m.latency
    judged = (
        f"; LLM scorers generated {m.scorer_generated_tokens} more"
        if m.scorer_generated_tokens
        else ""
    )
    lines.append(
        f"tokens: {m.tokens_per_problem:.1f} generated per problem ({m.generated_tokens} in all"
        f"{judged}); prefix-cache hit rate {m.prefix_cache_hit_rate:.0%}"
    )
    if lat:
        lines.append(
            f"latency (s): p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}"
        )
    for error, count in m.errors.items():
        lines.append(f"failed x{count}: {error}")
    return "\n".join(lines)


def comparison_text(c: PairedTest, a: str, b: str, *, holm_p: float | None = None) -> str:
    """The paired verdict on two runs; ``holm_p`` when the comparison is one of several."""
    if c.shared == 0:
        return f"{a} and {b} share no graded problems; nothing to compare"
    p = c.p_value if holm_p is None else holm_p
    verdict = (
        f"significant at 5% ({'A' if c.only_a > c.only_b else 'B'} is better)"
        if p < 0.05
        else "not significant at 5%"
    )
    low, high = c.ci95
    test = f"McNemar exact test: p = {c.p_value:.4f}"
    if holm_p is not None:
        test += f" (Holm-corrected over the budgets: {holm_p:.4f})"
    return "\n".join(
        [
            f"A: {a}\nB: {b}",
            f"shared problems: {c.shared}  A correct: {c.a_correct}  B correct: {c.b_correct}",
            f"only A right: {c.only_a}  only B right: {c.only_b}",
            f"accuracy A - B: {c.difference * 100:+.1f} points "
            f"(95% paired bootstrap interval {low * 100:+.1f} to {high * 100:+.1f})",
            f"{test}, {verdict}",
        ]
    )

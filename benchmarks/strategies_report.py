"""Tables, the comparison with self-consistency at equal tokens, and the plot of strategies.py."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.markdown import table
from branchwise.orchestrator.results import ProblemResult
from branchwise.verifiers.reference import answers_match

HIDDEN_KEYS = {"name", "scorer", "max_depth", "step_max_tokens"}
# Arms that write one path whatever the budget: they run at the smallest budget only.
SINGLE_PATH = ("rsd", "target_only")


def summarise(results: list[ProblemResult], scorer: str = "prm") -> dict[str, Any]:
    """One row's numbers and its per-problem outcomes (so any two rows compare paired).

    Coverage = a right answer among all finished paths (pruned too). PRM tokens are the
    sequences the scorer named ``scorer`` read (prompt + path), in policy tokens. Generated
    and prompt tokens include what LLM scorers (self-verification) spent on the policy: they
    are part of the method's cost.
    """
    count = len(results)

    def total(key: str) -> float:
        return float(sum(r.usage.get(key, 0) for r in results))

    def generated(r: ProblemResult) -> int:
        own, scorers = r.usage.get("generated_tokens", 0), r.usage.get("scorer_generated_tokens", 0)
        return int(own) + int(scorers)

    accuracy = statistics.fmean(bool(r.correct) for r in results)
    covered = 0
    for r in results:
        finished = r.graph.terminals(include_pruned=True) if r.graph is not None else []
        covered += any(answers_match(n.answer, r.reference) for n in finished)
    prompt = total("prompt_tokens") + total("scorer_prompt_tokens")
    cached = total("cached_prompt_tokens") + total("scorer_cached_prompt_tokens")
    errors = [r.error for r in results if r.error]
    outcomes: list[dict[str, Any]] = []
    for r in results:
        graph = r.graph
        prm_tokens = 0
        if graph is not None:
            scored = [n for n in graph.nodes() if n.parent_id is not None]
            scores = [(n, graph.score(n.id, scorer)) for n in scored]
            prm_tokens = sum(len(graph.full_token_ids(n.id)) for n, s in scores if s is not None)
            # A scorer that failed leaves an error on the node, not on the result: count it,
            # or a broken PRM reads as a strategy that never answers.
            errors += [f"{r.problem_id} {n.id}: {s.error}" for n, s in scores if s and s.error]
        outcomes.append({
            "id": r.problem_id, "answer": r.answer, "correct": bool(r.correct),
            "tokens": generated(r), "prm_tokens": prm_tokens,
        })  # fmt: skip
    return {
        "problems": count,
        "accuracy": accuracy,
        "stderr": (accuracy * (1 - accuracy) / count) ** 0.5,
        "coverage": covered / count,
        "answered": statistics.fmean(r.answer is not None for r in results),
        "tokens_per_problem": sum(generated(r) for r in results) / count,
        "scorer_generated_tokens_per_problem": total("scorer_generated_tokens") / count,
        "prompt_tokens_per_problem": prompt / count,
        "cache_hit_rate": cached / prompt if prompt else 0.0,
        "prm_calls_per_problem": total("scorer_calls") / count,
        "prm_tokens_per_problem": sum(int(o["prm_tokens"]) for o in outcomes) / count,
        "engine_calls_per_problem": total("engine_calls") / count,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        **choice_counts(results),
        "outcomes": outcomes,
    }


def choice_counts(results: list[ProblemResult]) -> dict[str, float]:
    """AB-MCTS's wider/deeper decisions per problem, when the strategy reports them."""
    out: dict[str, float] = {}
    for key in ("wider", "deeper"):
        counts = [r.detail[key] for r in results if key in r.detail]
        if counts:
            out[f"{key}_per_problem"] = sum(counts) / len(results)
    return out


def short_config(row: dict[str, Any]) -> str:
    config = row["config"]
    text = " ".join(f"{k}={v}" for k, v in config.items() if k not in HIDDEN_KEYS)
    return f"T=0 {text}" if row["temperature"] == 0 else text


def rows_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "set", "strategy", "budget", "config", "accuracy", "coverage", "gen tokens/problem",
        "PRM calls/problem", "PRM tokens/problem", "compute/problem (of it cached)",
        "engine calls/problem", "prefix-cache hit", "wider/deeper per problem", "seconds",
    ]  # fmt: skip
    body = [
        [
            row["set"],
            row["arm"],
            f"{row['budget']}x" if row["budget"] else "-",
            short_config(row),
            f"{row['accuracy']:.3f} ± {row['stderr']:.3f}",
            f"{row['coverage']:.3f}",
            f"{row['tokens_per_problem']:.0f}",
            f"{row['prm_calls_per_problem']:.1f}",
            f"{row.get('prm_tokens_per_problem', 0.0):.0f}",
            f"{row['compute_per_problem']:.3g} ({row['cached_compute_per_problem']:.2g})"
            if "compute_per_problem" in row
            else "-",
            f"{row['engine_calls_per_problem']:.1f}",
            f"{row['cache_hit_rate']:.1%}",
            f"{row['wider_per_problem']:.1f} / {row['deeper_per_problem']:.1f}"
            if "wider_per_problem" in row
            else "-",
            f"{row['seconds']:.0f}" + (f" ({row['errors']} errors)" if row["errors"] else ""),
        ]
        for row in rows
    ]
    return table(headers, body)


def sc_curve(rows: list[dict[str, Any]], key: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """Self-consistency's (log tokens, ``key``), with the single sample as N = 1."""
    points = [
        (r["tokens_per_problem"], r[key])
        for r in rows
        if (r["arm"] == "self_consistency" and r["set"] == "sampling")
        or r["arm"] == "single_sample"
    ]
    points.sort()
    return np.log([p[0] for p in points]), np.array([p[1] for p in points])


def compare_to_self_consistency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each PRM row against self-consistency's accuracy at the same generated tokens.

    SC's accuracy is interpolated linearly in log tokens between its measured points; past
    either end it is held at the end point (``inside`` is then false).
    """
    log_tokens, accuracy = sc_curve(rows)
    _, coverage = sc_curve(rows, "coverage")
    if len(log_tokens) < 2:
        return []
    out = []
    for row in rows:
        if row["set"] not in ("prm", "oracle"):
            continue
        x = math.log(max(row["tokens_per_problem"], 1.0))
        sc = float(np.interp(x, log_tokens, accuracy))
        out.append(
            {
                "arm": row["arm"],
                "set": row["set"],
                "budget": row["budget"],
                "tokens_per_problem": row["tokens_per_problem"],
                "accuracy": row["accuracy"],
                "coverage": row["coverage"],
                "sc_accuracy": sc,
                "sc_coverage": float(np.interp(x, log_tokens, coverage)),
                "difference": row["accuracy"] - sc,
                "inside": bool(log_tokens[0] <= x <= log_tokens[-1]),
            }
        )
    return out


def verdicts(comparison: list[dict[str, Any]], which: str) -> dict[str, dict[str, Any]]:
    """Per strategy: ahead of / mixed against / behind SC, the per-budget and mean differences."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(c["arm"] for c in comparison if c["set"] == which):
        points = [c for c in comparison if c["set"] == which and c["arm"] == arm]
        wins = sum(c["difference"] > 0 for c in points)
        diffs = ", ".join(
            f"{c['difference'] * 100:+.1f}" + ("" if c["inside"] else "*") for c in points
        )
        kind = "ahead of" if wins == len(points) else "mixed against" if wins else "behind"
        out[arm] = {
            "kind": kind,
            "mean": sum(c["difference"] for c in points) / len(points),
            "coverage": sum(c["coverage"] for c in points) / len(points),
            "sc_coverage": sum(c["sc_coverage"] for c in points) / len(points),
            "accuracy": sum(c["accuracy"] for c in points) / len(points),
            "text": f"{kind} SC ({wins}/{len(points)} budgets ahead: {diffs} pp)",
        }
    return out


def diagnosis(learned: dict[str, Any], oracle: dict[str, Any] | None, se: float) -> str:
    """Why a PRM strategy did not beat SC, read off its oracle rows and its coverage."""
    held = (
        f"a right answer was among its finished paths in {learned['coverage']:.0%} of problems "
        f"(SC at the same tokens: {learned['sc_coverage']:.0%})"
    )
    if (learned["sc_coverage"] - learned["coverage"]) * 100 > 2 * se:
        cause = f"its PRM-guided pruning drops right paths: {held}"
    elif (learned["coverage"] - learned["accuracy"]) * 100 > 2 * se:
        cause = f"{held}, but its PRM-based final choice finds it no more often than SC's vote"
    else:
        cause = f"{held}; its search spends the tokens no better than independent samples"
    if oracle is None:
        return cause
    if oracle["kind"] == "ahead of":
        return (
            f"{cause}. The same search with the exact checker is ahead of SC at every budget "
            f"(mean {oracle['mean'] * 100:+.1f} pp): the learned PRM's ranking holds it back"
        )
    return f"{cause}. Even with the exact checker it is {oracle['kind']} SC"


def note(comparison: list[dict[str, Any]], data: dict[str, Any]) -> str:
    """The targets, then the comparison of every PRM strategy with self-consistency."""
    lines = targets(data)
    return "\n".join(
        [*lines, "", comparison_note(comparison, data)]
        if lines
        else [comparison_note(comparison, data)]
    )


def comparison_note(comparison: list[dict[str, Any]], data: dict[str, Any]) -> str:
    """The generated comparison of every PRM strategy with self-consistency."""
    if not comparison:
        return "_No self-consistency curve to compare with._"
    se = 100 * (0.25 / data["problems"]) ** 0.5
    lines = [
        "**PRM strategies vs self-consistency (SC) at equal generated tokens, descriptive**: "
        "accuracy difference in percentage points per budget, SC interpolated in log tokens "
        "between its measured points (N = 1 is the single sample; * = outside SC's measured "
        "range, SC held at its end point). An interpolated curve cannot be paired, so these "
        "point estimates make no claim; the paired claims above do. With "
        f"{data['problems']} problems one accuracy has a standard error of up to {se:.1f} pp.",
        "",
    ]
    learned, oracle = verdicts(comparison, "prm"), verdicts(comparison, "oracle")
    for arm, verdict in learned.items():
        line = f"- **{arm}**: learned PRM {verdict['text']}"
        if arm in oracle:
            line += f"; oracle checker {oracle[arm]['text']}"
        if verdict["kind"] != "ahead of":
            line += f". Why: {diagnosis(verdict, oracle.get(arm), se)}"
        lines.append(line + ".")
    groups: dict[str, list[str]] = {"ahead of": [], "mixed against": [], "behind": []}
    for arm, verdict in learned.items():
        groups[verdict["kind"]].append(arm)
    lines += [
        "",
        f"With the learned PRM, ahead of SC at every budget: "
        f"{', '.join(groups['ahead of']) or 'none'}; at some budgets: "
        f"{', '.join(groups['mixed against']) or 'none'}; at none: "
        f"{', '.join(groups['behind']) or 'none'} (point estimates; which gaps are beyond the "
        "noise is in the paired claims above).",
    ]
    return "\n".join(lines)


X_AXES = (
    ("tokens_per_problem", "generated tokens per problem (log)"),
    ("compute_per_problem", "total compute per problem, policy + PRM (token x parameters, log)"),
)


def plot(rows: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """Accuracy against both cost axes (top: generated tokens; bottom: total compute, log x):
    left the strategies without a PRM, right the PRM strategies (learned PRM solid, oracle
    checker dotted); self-consistency and the greedy / single-sample baselines in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_keys = [(k, label) for k, label in X_AXES if all(k in r for r in rows)]
    fig, grid = plt.subplots(
        len(axes_keys), 2, figsize=(15, 7 * len(axes_keys)), sharey=True, squeeze=False
    )
    panels = (("without a PRM", ("sampling",)), ("PRM-guided (dotted: oracle PRM)", ("prm",)))
    for (key, xlabel), axes in zip(axes_keys, grid, strict=True):
        for ax, (heading, sets) in zip(axes, panels, strict=True):
            _panel(ax, plt, rows, key, sets)
            ax.set_xlabel(xlabel)
            ax.set_title(heading)
        axes[0].set_ylabel("accuracy")
    fig.suptitle(f"Branchwise strategies on the testbed: {title}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _panel(ax: Any, plt: Any, rows: list[dict[str, Any]], key: str, sets: tuple[str, ...]) -> None:
    arms = [r["arm"] for r in rows if r["set"] in sets and r["arm"] != "self_consistency"]
    arms = list(dict.fromkeys(arms))
    colours: dict[str, Any] = {arm: plt.get_cmap("tab20")(i % 20) for i, arm in enumerate(arms)}
    colours["self_consistency"] = "black"
    for arm in ["self_consistency", *arms]:
        for which, style in (("sampling", "-s"), ("prm", "-o"), ("oracle", ":^")):
            points = sorted(
                (r[key], r["accuracy"]) for r in rows if r["arm"] == arm and r["set"] == which
            )
            if not points or (which == "oracle" and "prm" not in sets):
                continue
            label = f"{arm} (oracle)" if which == "oracle" else arm
            width = 2.4 if arm == "self_consistency" else 1.0 if which == "oracle" else 1.5
            ax.plot(*zip(*points, strict=True), style, color=colours[arm], label=label,
                    linewidth=width, markersize=4)  # fmt: skip
    for r in rows:
        if r["set"] == "baseline":
            colour = "dimgrey" if r["arm"] == "greedy" else "darkgrey"
            ax.axhline(r["accuracy"], color=colour, linestyle="--", linewidth=1)
            ax.plot([r[key]], [r["accuracy"]], "D", color=colour,
                    label=f"{r['arm']} ({r['accuracy']:.3f})")  # fmt: skip
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)


def _sc_at(rows: list[dict[str, Any]], tokens: float) -> tuple[float, bool]:
    """Self-consistency's accuracy at ``tokens`` (log-linear), and whether it is measured there."""
    log_tokens, accuracy = sc_curve(rows)
    x = math.log(max(tokens, 1.0))
    return float(np.interp(x, log_tokens, accuracy)), bool(log_tokens[0] <= x <= log_tokens[-1])


def _mark(met: bool) -> str:
    return "met" if met else "**missed**"


def targets(data: dict[str, Any]) -> list[str]:
    """The issue's targets, each read off the rows: met or missed, with the numbers."""
    rows, comparison = data["rows"], data.get("comparison") or []
    if len(sc_curve(rows)[0]) < 2:
        return []
    lines = [
        "**Targets of earlier issues** (point estimates at equal generated tokens against "
        "interpolated self-consistency; the paired claims above say which gaps are beyond noise):",
        "",
    ]
    # The strategies themselves; their variants (particle Gibbs, A*'s ablations) are extra arms.
    names = data.get("prm_strategies") or list(verdicts(comparison, "prm"))
    ahead: dict[str, list[int]] = {name: [] for name in names}
    for c in comparison:
        if c["set"] == "prm" and c["arm"] in ahead and c["inside"] and c["difference"] > 0:
            ahead[c["arm"]].append(c["budget"])
    ran: dict[str, set[int]] = {name: set() for name in names}
    for c in comparison:
        if c["set"] == "prm" and c["arm"] in ran:
            ran[c["arm"]].add(c["budget"])
    # A single-path strategy (RSD) has one row whatever the budget: it is held to that row,
    # the rest to two of their budgets.
    single = [n for n in names if n in SINGLE_PATH and ran[n]]
    need = {n: 1 if n in single else 2 for n in names}
    short = [f"{n} ({len(ahead[n])}/{len(ran[n])})" for n in names
             if ran[n] and len(ahead[n]) < need[n]]  # fmt: skip
    missing = [n for n in names if not ran[n]]
    lines.append(
        "- Every PRM strategy ahead at two budgets or more (SC measured there"
        + (f"; {', '.join(single)} ran one budget, so held to that one" if single else "")
        + f"): {_mark(not short)}"
        + (f"; not: {', '.join(short)}" if short else "")
        + (f" (not measured: {', '.join(missing)})" if missing else "")
        + "."
    )

    # Whether a strategy is ahead beyond the noise is a paired, Holm-corrected claim
    # (strategies_claims.py), not an unpaired margin.
    for arm in ("mcts", "ab_mcts", "ab_mcts_m"):
        own = sorted((r["budget"], r["tokens_per_problem"]) for r in rows
                     if r["arm"] == arm and r["set"] == "prm")  # fmt: skip
        if len(own) < 2:
            continue
        grows = all(b[1] > a[1] for a, b in itertools.pairwise(own))
        steps = " -> ".join(f"{t:.0f}" for _, t in own)
        lines.append(f"- {arm}'s tokens grow with the budget: {_mark(grows)} ({steps}).")
    sc32 = next((r for r in rows if r["arm"] == "self_consistency" and r["set"] == "sampling"
                 and r["config"].get("n") == 32), None)  # fmt: skip
    adaptive = [r for r in rows if r["arm"] == "adaptive_self_consistency"]
    if sc32 and adaptive:
        good = [r for r in adaptive if r["accuracy"] >= sc32["accuracy"] - 0.01 - 1e-9]
        cheapest = min(good, key=lambda r: r["tokens_per_problem"]) if good else None
        best = max(adaptive, key=lambda r: r["accuracy"])
        share = (cheapest or best)["tokens_per_problem"] / sc32["tokens_per_problem"]
        met = cheapest is not None and share <= 0.4
        pick = cheapest or best
        lines.append(
            f"- Adaptive self-consistency reaches SC@32 ({sc32['accuracy']:.3f}, "
            f"{sc32['tokens_per_problem']:.0f} tokens) within 1 point with at most 40% of its "
            f"tokens: {_mark(met)}; "
            + (f"{pick['budget']}x: " if cheapest else "its best, ")
            + f"{pick['accuracy']:.3f} with {pick['tokens_per_problem']:.0f} tokens "
            f"({share:.0%})."
        )
    deepconf = [r for r in rows if r["arm"] == "deepconf"]
    if deepconf:
        gaps = []
        for r in sorted(deepconf, key=lambda r: r["budget"]):
            sc, inside = _sc_at(rows, r["tokens_per_problem"])
            gaps.append((r["budget"], (r["accuracy"] - sc) * 100, inside))
        met = all(gap >= 0 for _, gap, _ in gaps)
        text = ", ".join(f"{b}x {g:+.1f}" + ("" if i else "*") for b, g, i in gaps)
        paired = [
            f"{c['budget']}x {c['verdict']}"
            for c in data.get("claims") or []
            if c["arm"] == "deepconf" and c["axis"] == "tokens" and c.get("kind") != "natural"
        ]
        lines.append(
            f"- DeepConf online at least as accurate as SC at the same tokens: {_mark(met)}; "
            f"{text} pp (point estimates)"
            + (f"; paired against the reference: {', '.join(paired)}" if paired else "")
            + "."
        )
    return lines

"""Every claim of the strategies report, paired and Holm-corrected.

A claim is one row against its reference at equal cost: the better (on the same problems) of
greedy decoding and the tuned self-consistency row that spends at least as much, on the
cost axis at hand (generated tokens, or total compute). Giving the baseline at least the
row's cost keeps the comparison conservative for the strategy, and picking among measured
rows (not an interpolation) keeps the outcomes paired problem by problem. Each claim gets
the paired bootstrap interval of the difference and McNemar's exact p-value; the p-values
of every claim the report makes are Holm-corrected together.

Besides that common reference, a method added with a natural baseline of its own (``NATURAL``:
beam search for its variants, target-only decoding for RSD, one plain sample for power
sampling, ...) is compared with that arm's row spending at least as much, on each axis. Every
claim says which kind of reference it has (``kind``: baseline, natural or same budget).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from branchwise.orchestrator.paired_stats import holm, paired_test

AXES = {"tokens": "tokens_per_problem", "compute": "compute_per_problem"}
ALPHA = 0.05


def outcomes(row: dict[str, Any]) -> dict[str, bool]:
    return {o["id"]: bool(o["correct"]) for o in row.get("outcomes") or []}


def is_baseline(row: dict[str, Any]) -> bool:
    return bool(row["set"] == "baseline") or (
        row["arm"] == "self_consistency" and row["set"] == "sampling"
    )


def reference(
    rows: list[dict[str, Any]], row: dict[str, Any], axis: str
) -> tuple[dict[str, Any], bool]:
    """The better of greedy and the cheapest SC row costing at least ``row`` (on ``axis``),
    and whether every SC row costs less (then the costliest stands in)."""
    key = AXES[axis]
    greedy = [r for r in rows if r["arm"] == "greedy" and r["set"] == "baseline"]
    sc = sorted(
        (r for r in rows if r["arm"] == "self_consistency" and r["set"] == "sampling"),
        key=lambda r: r[key],
    )
    enough = [r for r in sc if r[key] >= row[key]]
    candidates = greedy + ([enough[0]] if enough else sc[-1:])
    if not candidates:
        raise SystemExit("no greedy or self-consistency row to compare with")
    return max(candidates, key=lambda r: (r["accuracy"], -r[key])), not enough


def claims(rows: list[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """One claim per non-baseline row and cost axis, with Holm-corrected p-values."""
    out: list[dict[str, Any]] = []
    # only rows with outcomes pair up: a table that mixes in older rows (measured before
    # outcomes were kept) compares against the newer baselines only, or not at all
    paired = [r for r in rows if r.get("outcomes")]
    has_reference = any(is_baseline(r) and r["arm"] != "single_sample" for r in paired)
    for row in paired if has_reference else []:
        if is_baseline(row):
            continue
        for axis, key in AXES.items():
            if key not in row:
                continue
            ref, short = reference(paired, row, axis)
            test = paired_test(outcomes(row), outcomes(ref), seed=seed)
            out.append({
                "arm": row["arm"], "set": row["set"], "budget": row["budget"], "axis": axis,
                "kind": "baseline", "cost": row[key], "reference": f"{ref['arm']} {label(ref)}",
                "reference_cost": ref[key], "reference_short": short,
                **test.to_dict(),
            })  # fmt: skip
    # a natural baseline that is the common reference's own row would repeat its claim (and
    # widen the Holm family for nothing)
    out += natural(rows, seed, made={_claim_key(c) for c in out})
    out += head_to_head(rows, seed)
    for claim, p in zip(out, holm([c["p_value"] for c in out]), strict=True):
        claim["p_holm"] = p
        claim["verdict"] = (
            ("ahead" if claim["difference"] > 0 else "behind") if p < ALPHA else "within noise"
        )
    return out


# An arm against another at the same budget and set (about the same generated tokens): AB-MCTS
# and its adaptive variants against the weighted best-of-N they reduce to without adaptivity.
HEAD_TO_HEAD = {
    "ab_mcts": "best_of_n",
    "ab_mcts_m": "best_of_n",
    "ab_mcts_adaptive": "best_of_n",
    "ab_mcts_m_adaptive": "best_of_n",
}


# Each method's natural baseline from the issues that added it (besides greedy and tuned
# self-consistency, which every row meets): the arm it refines or replaces.
NATURAL: dict[str, tuple[str, ...]] = {
    "best_first_beam_search": ("beam_search",),
    "diverse_beam_search": ("beam_search",),
    "cp_beam_search": ("beam_search",),
    "phi_decoding": ("beam_search",),
    "treebon": ("best_of_n",),
    "sample_scrutinize": ("best_of_n",),
    "rsd": ("target_only",),
    "power_sampling": ("single_sample",),
    "speculative_consensus": ("self_consistency",),
    # issue 21's sampling methods refine or re-weight plain (tuned) self-consistency
    "self_consistency_arithmetic": ("self_consistency",),
    "cover_pruning": ("self_consistency",),
    "rpc": ("self_consistency",),
    "div_sampling": ("self_consistency",),
    "osca": ("self_consistency",),
}


def _claim_key(claim: dict[str, Any]) -> tuple[Any, ...]:
    return claim["arm"], claim["set"], claim["budget"], claim["axis"], claim["reference"]


def natural(
    rows: list[dict[str, Any]],
    seed: int,
    made: Collection[tuple[Any, ...]] = (),
) -> list[dict[str, Any]]:
    """Each NATURAL arm's rows against their baseline arm's cheapest row spending at least as
    much on the axis (the costliest, flagged, when none does); oracle rows only against oracle
    rows, the others against any other set; a comparison in ``made`` (by ``_claim_key``) is
    not made again."""
    out = []
    for row in rows:
        for base in NATURAL.get(row["arm"], ()) if row.get("outcomes") else ():
            candidates = [
                r for r in rows
                if r["arm"] == base and r.get("outcomes")
                and (r["set"] == "oracle") == (row["set"] == "oracle")
            ]  # fmt: skip
            for axis, key in AXES.items():
                if not candidates or key not in row:
                    continue
                ordered = sorted(candidates, key=lambda r: r[key])
                enough = [r for r in ordered if r[key] >= row[key]]
                ref = enough[0] if enough else ordered[-1]
                claim = {
                    "arm": row["arm"], "set": row["set"], "budget": row["budget"], "axis": axis,
                    "kind": "natural", "cost": row[key],
                    "reference": f"{ref['arm']} {label(ref)}", "reference_cost": ref[key],
                    "reference_short": not enough,
                }  # fmt: skip
                if _claim_key(claim) not in made:
                    test = paired_test(outcomes(row), outcomes(ref), seed=seed)
                    out.append(claim | test.to_dict())
    return out


def head_to_head(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    index = {(r["arm"], r["set"], r["budget"]): r for r in rows if r.get("outcomes")}
    out = []
    for (arm, which, budget), row in index.items():
        other = index.get((HEAD_TO_HEAD.get(arm, ""), which, budget))
        if other is None:
            continue
        test = paired_test(outcomes(row), outcomes(other), seed=seed)
        out.append({
            "arm": arm, "set": which, "budget": budget, "axis": "same budget",
            "kind": "same budget", "cost": row["tokens_per_problem"],
            "reference": f"{other['arm']} {budget}x",
            "reference_cost": other["tokens_per_problem"], "reference_short": False,
            **test.to_dict(),
        })  # fmt: skip
    return out


def label(row: dict[str, Any]) -> str:
    n = row["config"].get("n")
    return "T=0" if row["temperature"] == 0 else f"n={n}" if n else f"{row['budget']}x"


def claims_note(found: list[dict[str, Any]], prm_strategies: list[str]) -> list[str]:
    """The headline target and the per-claim table's reading, from the claims."""
    if not found:
        return [
            "_No paired claims: the baselines' rows (greedy, self-consistency) were measured "
            "before per-problem outcomes were kept. Rerun the benchmark to get them._"
        ]
    common = [c for c in found if c.get("kind", "baseline") == "baseline"]
    tokens = [c for c in common if c["axis"] == "tokens"]
    at4 = [
        c for c in tokens
        if c["set"] == "prm" and c["arm"] in prm_strategies and c["budget"] == 4
    ]  # fmt: skip
    ahead4 = [c for c in at4 if c["verdict"] == "ahead"]

    def item(c: dict[str, Any]) -> str:
        low, high = c["ci95"]
        return (
            f"{c['arm']} {c['budget']}x {c['difference'] * 100:+.1f} "
            f"[{low * 100:+.1f}, {high * 100:+.1f}] vs {c['reference']} (Holm p {c['p_holm']:.3g})"
        )

    mark = "met" if len(ahead4) >= 3 else "**missed**"
    lines = [
        f"**Paired claims** ({len(found)} in all: every row against the better of greedy and "
        "tuned self-consistency spending at least as much, on each cost axis; exact McNemar, "
        f"Holm-corrected over all {len(found)}; differences in points with 95% paired "
        "bootstrap intervals).",
        "",
        f"- At least 3 PRM strategies ahead at 4x at equal generated tokens: {mark}; "
        f"{len(ahead4)} of {len(at4)} measured"
        + (f": {'; '.join(item(c) for c in ahead4)}" if ahead4 else "")
        + ".",
    ]
    by_key = {(c["arm"], c["set"], c["budget"], c["axis"]): c for c in common}
    split = [
        c for c in tokens
        if c["verdict"] == "ahead"
        and by_key.get((c["arm"], c["set"], c["budget"], "compute"), {}).get("verdict") != "ahead"
    ]  # fmt: skip
    lines.append(
        "- Ahead on generated tokens but not on total compute: "
        + (
            "; ".join(
                f"{item(c)}; on compute "
                f"{by_key[(c['arm'], c['set'], c['budget'], 'compute')]['verdict']}"
                for c in split
                if (c["arm"], c["set"], c["budget"], "compute") in by_key
            )
            or "none"
        )
        + "."
    )
    for verdict in ("ahead", "behind"):
        chosen = [c for c in found if c["verdict"] == verdict]
        lines.append(
            f"- All claims {verdict} beyond noise ({len(chosen)}): "
            + ("; ".join(f"{item(c)} [{c['axis']}, {c['set']}]" for c in chosen) or "none")
            + "."
        )
    vs = [c for c in found if c["axis"] == "same budget"]
    if vs:
        lines.append(
            "- AB-MCTS against weighted best-of-N at the same budget: "
            + "; ".join(
                f"{item(c)} [{c['set']}] ({c['cost']:.0f} vs {c['reference_cost']:.0f} tokens), "
                f"{c['verdict']}"
                for c in vs
            )
            + "."
        )
    own = [c for c in found if c.get("kind") == "natural"]
    if own:
        lines.append(
            "- Against each method's natural baseline (the arm it refines or replaces, its row "
            "spending at least as much): "
            + "; ".join(f"{item(c)} [{c['axis']}, {c['set']}], {c['verdict']}" for c in own)
            + "."
        )
    short = sorted(
        f"{c['arm']} {c['budget']}x [{c['set']}, {c['axis']}] vs {c['reference']}"
        for c in found
        if c["reference_short"]
    )
    if short:
        lines.append(
            "- Rows costing more than every reference row (compared with the costliest): "
            + ", ".join(short)
            + "."
        )
    return lines

"""One small tuning grid per axis, the same for every strategy, on the val split only.

Two axes, run in this order (each at one budget, default 2x, on 100 val problems):

- ``--axis sampling``: every arm (self-consistency, best-of-N and every other strategy and
  variant alike) on the same grid of temperature x top-p (``SAMPLING_GRID``), at its current
  PRM knobs. The best cell by val accuracy (ties: the untuned T=1, top-p 1, listed first) is
  written to ``sampling`` in the results, and benchmarks/strategies.py reads it from there.
- ``--axis knobs``: each PRM strategy's four configs at its tuned sampling: how it reads the
  learned PRM (``aggregation``: min, the weakest step, or last, the newest step's
  prefix-correctness estimate) crossed with how it picks the answer (``final``: best path or
  value-weighted vote; best-of-N's ``weighted``; A*'s ``verifier``). The best (ties: the
  default, listed first) is written to ``chosen``, which strategies.py reads (``PRM_KNOBS``
  holds the committed picks as the fallback).

Both write benchmarks/results/strategies_tuning.json (each axis keeps the other's results);
a run interrupted is resumed by the same command (its rows are kept in a progress file).

    python benchmarks/strategies_tuning.py --axis sampling|knobs [--problems 100] [--budget 2]
        [--seed 0] [--strategies a,b] [--out strategies_tuning]
    python benchmarks/strategies_tuning.py --render   # run nothing: redo the BENCHMARKS.md section

Each run also writes the ``strategies_tuning`` section of BENCHMARKS.md: per arm, the chosen
cell, the spread of val accuracy over the grid, and the standard error that spread is read
against (at 100 problems most arms' cells lie within it: the choice is then mostly noise,
and the untuned cell is kept on exact ties only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import RESULTS, table, write_json, write_section
from benchmarks.strategies import (
    BASE_N,
    FIXED_SAMPLING,
    PRM_STRATEGIES,
    TESTBED,
    UNTUNED,
    Progress,
    arm_names,
    prm_digest,
    run_rows,
    sampling_for,
    strategy_config,
    use_tuned_knobs,
    uses_prm,
)
from benchmarks.strategies_report import rows_table
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.strategies.base import STRATEGIES

VAL = TESTBED / "data" / "val.jsonl"
AGGREGATIONS = ("min", "last")
# The untuned cell first: it is kept on ties.
SAMPLING_GRID = [
    UNTUNED,
    *({"temperature": t, "top_p": p} for t in (1.0, 0.8, 0.6) for p in (1.0, 0.9)
      if (t, p) != (1.0, 1.0)),
]  # fmt: skip


def pickers(name: str) -> list[dict[str, Any]]:
    """The answer-choice axis of the grid, the strategy's default first."""
    if name == "best_of_n":
        return [{"weighted": False}, {"weighted": True}]
    if name == "a_star":
        return [{"verifier": None}, {"verifier": "prm"}]
    if name in ("dvts", "particle_filter"):
        return [{"final": "weighted_vote"}, {"final": "best"}]
    if name == "rsd":  # one path, no final choice: the threshold is its knob
        return [{"threshold": 0.7}, {"threshold": 0.5}, {"threshold": 0.3}]
    if "final" not in STRATEGIES.get(name).config_model.model_fields:
        return [{}]  # the strategy has one way to pick its answer
    return [{"final": "best"}, {"final": "weighted_vote"}]


def sampling_grid(budget: int, names: list[str]) -> list[dict[str, Any]]:
    """Every arm at every cell of ``SAMPLING_GRID``."""
    return [
        {"arm": name, "set": "prm" if uses_prm(name) else "sampling", "budget": budget,
         **cell, "config": strategy_config(name, BASE_N * budget), "knobs": cell}
        for name in names
        for cell in ([UNTUNED] if name in FIXED_SAMPLING else SAMPLING_GRID)
    ]  # fmt: skip


def grid(budget: int, tuned: dict[str, dict[str, float]], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in (n for n in PRM_STRATEGIES if n in names):
        base = strategy_config(name, BASE_N * budget)
        default_aggregation = "last" if name == "particle_filter" else "min"
        order = sorted(AGGREGATIONS, key=lambda a: a != default_aggregation)
        for aggregation in order:
            for picker in pickers(name):
                knobs = {"aggregation": aggregation, **picker}
                rows.append({"arm": name, "set": "prm", "budget": budget,
                             **sampling_for(name, tuned), "config": {**base, **knobs},
                             "knobs": knobs})  # fmt: skip
    return rows


def best_cells(done: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each arm's best cell by accuracy; the first listed wins ties."""
    chosen: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["arm"] for r in done):
        candidates = [r for r in done if r["arm"] == name]
        top = max(r["accuracy"] for r in candidates)
        chosen[name] = next(r for r in candidates if r["accuracy"] == top)["knobs"]
    return chosen


def kept_rows(old: list[dict[str, Any]], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier rows of arms not rerun, then this run's rows (a subset run keeps the rest)."""
    rerun = {row["arm"] for row in done}
    return [row for row in old if row["arm"] not in rerun] + done


def spread(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Per arm: its cells' accuracy range, the chosen (first best) and the default cell's."""
    out = []
    for name in dict.fromkeys(r["arm"] for r in rows):
        cells = [r for r in rows if r["arm"] == name]
        best = max(cells, key=lambda r: r["accuracy"])  # max keeps the first on ties
        low = min(r["accuracy"] for r in cells)
        knobs = " ".join(f"{k}={v}" for k, v in best["knobs"].items())
        out.append([
            name, len(cells), knobs, f"{best['accuracy']:.3f}", f"{cells[0]['accuracy']:.3f}",
            f"{(best['accuracy'] - low) * 100:.1f}", f"{best['stderr'] * 100:.1f}",
        ])  # fmt: skip
    return out


def section(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md section: both axes' choices and how far apart their cells are."""
    head = (
        f"## Strategies tuning (val split, {data['problems']} problems at {data['budget']}x): "
        "what each arm runs with on test\n\n"
        f"PRM: {data.get('prm', '-')} (weights sha256 `{data.get('prm_sha256') or '-'}`). Each "
        "arm keeps its best cell (the first listed, the default, on ties); `spread` is its best "
        "minus its worst cell in points, to be read against one cell's standard error (`SE`).\n"
        "Commands: `python benchmarks/strategies_tuning.py --axis sampling`, then "
        "`--axis knobs`.\n"
    )
    headers = ["arm", "cells", "chosen", "val accuracy", "default cell", "spread (pp)", "SE (pp)"]
    parts = [head]
    for key, title in (
        ("sampling_rows", "Sampling (temperature x top-p; the default cell is T=1, top-p 1)"),
        ("rows", "PRM knobs (aggregation x answer choice, at the tuned sampling; default first)"),
    ):
        if not data.get(key):
            continue
        found = spread(data[key])
        wide = [row[0] for row in found if float(row[5]) > 2 * float(row[6])]
        parts.append(
            f"{title}: {len(found) - len(wide)} of {len(found)} arms' cells lie within two "
            "standard errors of each other (their choice is mostly noise at this size)"
            + (f"; wider: {', '.join(wide)}" if wide else "")
            + ".\n\n"
            + table(headers, found)
        )
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--axis", choices=("sampling", "knobs"))
    parser.add_argument("--render", action="store_true", help="run nothing: redo the section")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budget", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--strategies", default="", help="comma-separated subset (default all)")
    parser.add_argument("--out", default="strategies_tuning", help="results name (smoke runs)")
    args = parser.parse_args()
    if args.render:
        write_section(
            "strategies_tuning", section(json.loads((RESULTS / f"{args.out}.json").read_text()))
        )
        return
    if args.axis is None:
        parser.error("--axis sampling|knobs is required (or --render)")
    arms = arm_names()
    names = [s for s in args.strategies.split(",") if s.strip()] or arms
    unknown = sorted(set(names) - set(arms))
    if unknown:
        parser.error(f"--strategies: unknown {unknown}; registered and variants: {arms}")
    path = RESULTS / f"{args.out}.json"
    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    use_tuned_knobs(path)  # the sampling grid runs each PRM strategy at its current knobs
    problems = load_problems(VAL, limit=args.problems)
    rows = (
        sampling_grid(args.budget, names)
        if args.axis == "sampling"
        else grid(args.budget, old.get("sampling", {}), names)
    )
    settings = {"axis": args.axis, "problems": len(problems), "budget": args.budget,
                "seed": args.seed, "concurrency": args.concurrency}  # fmt: skip
    progress = Progress(RESULTS / f"{args.out}.{args.axis}.progress.jsonl", settings)
    done, prm_label, elapsed = asyncio.run(run_rows(rows, problems, args, progress))
    chosen = best_cells(done)
    print(rows_table(done))
    print(f"{args.axis}:", chosen)
    key, rows_key = ("sampling", "sampling_rows") if args.axis == "sampling" else ("chosen", "rows")
    write_json(
        args.out,
        {**old, "split": "val", "problems": len(problems), "budget": args.budget,
         "seed": args.seed, "prm": prm_label, "prm_sha256": prm_digest(),
         f"{args.axis}_seconds": round(elapsed, 1),
         key: {**old.get(key, {}), **chosen}, rows_key: kept_rows(old.get(rows_key, []), done)},
    )  # fmt: skip
    progress.finish()
    if args.out == "strategies_tuning":  # smoke runs (--out) leave BENCHMARKS.md alone
        write_section("strategies_tuning", section(json.loads(path.read_text())))


if __name__ == "__main__":
    main()

"""The same small tuning grid for every PRM strategy, on the val split (never on eval).

Each PRM strategy gets four configs at one budget (default 2x): how it reads the learned
PRM (``aggregation``: min, the weakest step, or last, the newest step's prefix-correctness
estimate, which on a finished path is the PRM's outcome score) crossed with how it picks the
answer (``final``: best path, or value-weighted vote; best-of-N's ``weighted``; A*'s
``verifier``: first finished path, or the first the PRM itself accepts). The best config by
val accuracy (ties: the strategy's default, listed first) goes into ``PRM_KNOBS`` in
benchmarks/strategies.py by hand. Results: benchmarks/results/strategies_tuning.json.

    python benchmarks/strategies_tuning.py [--problems 100] [--budget 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import write_json
from benchmarks.strategies import BASE_N, PRM_STRATEGIES, TESTBED, run_rows, strategy_config
from benchmarks.strategies_report import rows_table
from branchwise.orchestrator.datasets import load_problems

VAL = TESTBED / "data" / "val.jsonl"
AGGREGATIONS = ("min", "last")


def pickers(name: str) -> list[dict[str, Any]]:
    """The answer-choice axis of the grid, the strategy's default first."""
    if name == "best_of_n":
        return [{"weighted": False}, {"weighted": True}]
    if name == "a_star":
        return [{"verifier": None}, {"verifier": "prm"}]
    if name in ("dvts", "particle_filter"):
        return [{"final": "weighted_vote"}, {"final": "best"}]
    return [{"final": "best"}, {"final": "weighted_vote"}]


def grid(budget: int) -> list[dict[str, Any]]:
    rows = []
    for name in PRM_STRATEGIES:
        base = strategy_config(name, BASE_N * budget)
        default_aggregation = "last" if name == "particle_filter" else "min"
        order = sorted(AGGREGATIONS, key=lambda a: a != default_aggregation)
        for aggregation in order:
            for picker in pickers(name):
                knobs = {"aggregation": aggregation, **picker}
                rows.append({"arm": name, "set": "prm", "budget": budget, "temperature": 1.0,
                             "config": {**base, **knobs}, "knobs": knobs})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budget", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    problems = load_problems(VAL, limit=args.problems)
    done, prm_label, elapsed = asyncio.run(run_rows(grid(args.budget), problems, args))
    chosen: dict[str, dict[str, Any]] = {}
    for name in PRM_STRATEGIES:
        candidates = [r for r in done if r["arm"] == name]  # default first: kept on ties
        top = max(r["accuracy"] for r in candidates)
        best = next(r for r in candidates if r["accuracy"] == top)
        chosen[name] = best["knobs"]
    print(rows_table(done))
    print("PRM_KNOBS =", chosen)
    write_json(
        "strategies_tuning",
        {"split": "val", "problems": len(problems), "budget": args.budget, "seed": args.seed,
         "prm": prm_label, "seconds": round(elapsed, 1), "chosen": chosen, "rows": done},
    )  # fmt: skip


if __name__ == "__main__":
    main()

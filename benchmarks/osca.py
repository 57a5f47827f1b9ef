"""OSCA on the testbed: fit a mix of sampling configurations on val, check it on other val.

Every configuration (temperatures, and prompt changes from DivSampling's roles and hints) is
sampled ``--samples`` times on ``--problems`` val problems (one ``osca`` run, in-process
vLLM). The first half of the problems fits the allocation (``orchestrator.osca_fit``, the
vote objective) at each budget; the second half, which the fit never saw, checks it: the
estimated vote accuracy of the learned mix against the best single configuration at the same
number of samples (the single one chosen on the fit half too), from the second half's own
samples, and, at ``--run-budget``, real runs of both on the second half. The learned
allocations go to ``benchmarks/results/osca.json``, which the strategies benchmark's ``osca``
arm reads. The test split runs only with ``--final`` (the lead's final run).

    python benchmarks/osca.py [--split val] [--problems 200] [--samples 16]
        [--budgets 4,8,16] [--run-budget 8] [--seed 0]
    python benchmarks/osca.py --render   # run nothing: redo the BENCHMARKS.md section
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import run_or_render, table
from benchmarks.splits import add_split_arguments, check_split
from benchmarks.strategies import ANSWER, DATA, MAX_TOKENS, POLICY, PROMPT, STEP_DELIMITER, sha256
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.osca_fit import (
    Objective,
    collect_outcomes,
    evaluate_allocation,
    fit_allocation,
    fragment,
)
from branchwise.orchestrator.paired_stats import mcnemar_exact
from branchwise.orchestrator.recipe import Recipe, parse_recipe
from branchwise.orchestrator.runner import Orchestrator
from branchwise.strategies.div_sampling import APPROACHES, ROLES

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVES: tuple[Objective, ...] = ("vote", "coverage")
# Temperatures, and two of DivSampling's prompt changes (a first run with three of them, at
# 80 problems, found them near 0 % right: the tiny testbed policy loses the answer format
# when its prompt changes, so two stay in to show the fit leaves them out).
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "t0.2": {"temperature": 0.2},
    "t0.5": {"temperature": 0.5},
    "t0.8": {"temperature": 0.8},
    "t1.1": {"temperature": 1.1},
    "careful": {"temperature": 0.5, "system": ROLES[0]},
    "another_way": {"temperature": 0.5, "question": APPROACHES[0]},
}


def recipe(allocation: dict[str, int], seed: int) -> Recipe:
    return parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": {
                "name": "osca",
                "configurations": CONFIGURATIONS,
                "allocation": allocation,
            },
            "sampling": {"temperature": 1.0, "max_tokens": MAX_TOKENS},
            "prompt": PROMPT,
            "step_delimiter": STEP_DELIMITER,
            "answer": ANSWER,
            "seed": seed,
            "concurrency": 200,
        },
        base_dir=ROOT,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_file = DATA / f"{args.split}.jsonl"
    problems = load_problems(data_file, limit=args.problems)
    half = len(problems) // 2
    fit_half, check_half = problems[:half], problems[half:]
    engine_config = VLLMEngineConfig(
        model=str(POLICY), dtype="float32", max_model_len=256, gpu_memory_utilization=0.04,
        block_size=32, max_num_seqs=512, seed=args.seed,
    )  # fmt: skip
    started = time.perf_counter()
    base = recipe(dict.fromkeys(CONFIGURATIONS, 1), args.seed)
    async with VLLMEngine(engine_config) as engine:
        outcomes, tokens = await collect_outcomes(base, problems, args.samples, engine=engine)
        collected = time.perf_counter() - started
        fit_ids = {p.id for p in fit_half}
        fitting = {p: o for p, o in outcomes.items() if p in fit_ids}
        checking = {p: o for p, o in outcomes.items() if p not in fit_ids}
        rows = []
        for objective, budget in [(o, b) for o in OBJECTIVES for b in args.budgets]:
            fit = fit_allocation(fitting, budget, objective=objective, seed=args.seed)
            single = {fit.best_single: budget}

            def check(allocation: dict[str, int], objective: Objective = objective) -> float:
                return evaluate_allocation(
                    checking, allocation, objective=objective, seed=args.seed
                )

            rows.append(
                {
                    "objective": objective,
                    "budget": budget,
                    "allocation": fit.allocation,
                    "search": fit.search,
                    "splits_evaluated": fit.splits_evaluated,
                    "best_single": fit.best_single,
                    "fit": {"learned": fit.value, "best_single": fit.best_single_value},
                    "check": {
                        "learned": check(fit.allocation),
                        "best_single": check(single),
                        "every_single": {name: check({name: budget}) for name in CONFIGURATIONS},
                    },
                    "fragment": fragment(base, fit),
                }
            )
            shown = ("objective", "budget", "allocation", "fit", "check")
            print(json.dumps({k: rows[-1][k] for k in shown}))
        measured = {}
        run_row = next(
            (r for r in rows if r["budget"] == args.run_budget and r["objective"] == "vote"), None
        )
        if run_row is not None:
            for label, allocation in (
                ("learned", run_row["allocation"]),
                ("best_single", {run_row["best_single"]: args.run_budget}),
            ):
                async with Orchestrator(recipe(allocation, args.seed), engine=engine) as orch:
                    results = await orch.run(check_half)
                measured[label] = {
                    "allocation": allocation,
                    "accuracy": round(sum(bool(r.correct) for r in results) / len(results), 4),
                    "correct": [bool(r.correct) for r in results],
                    "tokens_per_problem": round(
                        sum(r.usage["generated_tokens"] for r in results) / len(results), 1
                    ),
                }
                print(label, {k: v for k, v in measured[label].items() if k != "correct"})
    return {
        "split": args.split,
        "data_sha256": sha256(data_file),
        "final": args.final,
        "problems": len(problems),
        "fit_problems": [p.id for p in fit_half][:1] + [p.id for p in fit_half][-1:],
        "check_problems": len(check_half),
        "samples_per_configuration": args.samples,
        "configurations": CONFIGURATIONS,
        "tokens_per_sample": tokens,
        "seed": args.seed,
        "collect_seconds": round(collected, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
        "run_budget": args.run_budget,
        "measured_on_check_half": measured,
        "command": " ".join(["python benchmarks/osca.py", *sys.argv[1:]]),
    }


def _mix(allocation: dict[str, int]) -> str:
    return " + ".join(f"{v} {k}" for k, v in sorted(allocation.items()))


def _points(difference: float) -> str:
    """A difference of two rates in points, signed, with no -0.0."""
    return f"{round(100 * difference, 1) + 0.0:+.1f}"


def section(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, generated from the results alone."""
    split = data["split"]
    rows = [
        [
            r["objective"],
            r["budget"],
            _mix(r["allocation"]),
            r["best_single"],
            f"{r['fit']['learned']:.3f} / {r['fit']['best_single']:.3f}",
            f"{r['check']['learned']:.3f}",
            f"{r['check']['best_single']:.3f}",
            _points(r["check"]["learned"] - r["check"]["best_single"]),
        ]
        for r in data["rows"]
    ]
    headers = ["objective", "samples", "learned mix", "best single", "fit half: mix / single",
               "check half: mix", "check half: single", "mix - single (points)"]  # fmt: skip
    lines = [
        f"## OSCA ({split} split): a learned mix of sampling configurations against the best "
        "single one\n",
        f"{data['problems']} testbed {split} problems (sha256 `{data['data_sha256']}`): the mix "
        f"is fitted on the first {data['problems'] - data['check_problems']} and checked on "
        f"the other {data['check_problems']}, {data['samples_per_configuration']} samples per "
        f"configuration and problem ({', '.join(data['configurations'])}), seed "
        f"{data['seed']}; {data['total_seconds'] / 60:.1f} min in all. A small-scale "
        f"{split}-split measurement.\nCommand: `{data['command']}`.\n",
        "Estimated vote accuracy (objective `vote`) or coverage (`coverage`) at equal samples "
        "per problem, from each half's own samples:\n",
        table(headers, rows) + "\n",
    ]
    for objective, what in (("vote", "vote accuracy"), ("coverage", "coverage")):
        mine = [r for r in data["rows"] if r["objective"] == objective]
        diffs = [r["check"]["learned"] - r["check"]["best_single"] for r in mine]
        if mine:
            lines.append(
                f"On the check half the mix fitted for {objective} differs in {what} from the "
                f"best single configuration by {_points(min(diffs))} to {_points(max(diffs))} "
                f"points over {len(mine)} budgets ({', '.join(str(r['budget']) for r in mine)} "
                "samples)."
            )
    measured = data.get("measured_on_check_half") or {}
    if {"learned", "best_single"} <= set(measured):
        a, b = measured["learned"], measured["best_single"]
        only_a = sum(x and not y for x, y in zip(a["correct"], b["correct"], strict=True))
        only_b = sum(y and not x for x, y in zip(a["correct"], b["correct"], strict=True))
        lines.append(
            f"Real runs at {data['run_budget']} samples on the check half: the mix "
            f"({_mix(a['allocation'])}) {a['accuracy']:.3f} at {a['tokens_per_problem']} "
            f"tokens per problem against {b['accuracy']:.3f} for {_mix(b['allocation'])} at "
            f"{b['tokens_per_problem']}; {only_a} problems right only with the mix, {only_b} "
            f"only with the single one (exact McNemar p = {mcnemar_exact(only_a, only_b):.3g})."
        )
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    add_split_arguments(parser)
    parser.add_argument("--problems", type=int, default=200, help="half fit, half check")
    parser.add_argument("--samples", type=int, default=16, help="per configuration and problem")
    parser.add_argument("--budgets", default="4,8,16", help="samples per problem to fit for")
    parser.add_argument("--run-budget", type=int, default=8, help="budget of the real runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--render", action="store_true", help="run nothing: redo the section from the results"
    )
    args = parser.parse_args()
    check_split(parser, args)
    args.budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    if not args.budgets or min(args.budgets) < 1 or args.problems < 4 or args.samples < 1:
        parser.error("--budgets, --problems (>= 4) and --samples must be positive")
    return args


def main() -> None:
    args = parse_args()
    name = "osca" if args.split == "val" else f"osca_{args.split}"
    run_or_render(name, args.render, lambda: asyncio.run(run(args)), section)


if __name__ == "__main__":
    main()

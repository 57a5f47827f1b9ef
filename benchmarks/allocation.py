"""The run-level budget on the testbed: a probe's agreement against an even split.

One in-process vLLM engine, ``--problems`` problems of one split, self-consistency at
``--temperature``. At each ``--budgets`` entry (generated tokens per problem on average; the
run budget is that times the problems) three arms spend the same run budget:
``agreement`` (``budget.run_generated_tokens`` with ``allocation.rule: agreement``: a probe of
``--probe`` samples per problem, the rest split by 1 - its agreement), ``uniform`` (the same
probe, the rest split evenly: the allocation is the only difference) and ``plain`` (plain
self-consistency with the samples an even split pays for at the probe's mean tokens per
sample, no probe). Paired against ``uniform`` (bootstrap interval, exact McNemar).
Writes benchmarks/results/allocation[_SPLIT].json. The test split only with ``--final``.

    python benchmarks/allocation.py [--split val] [--problems 60] [--budgets 160,320,640]
        [--probe 4] [--temperature 0.6] [--seed 0]
    python benchmarks/allocation.py --render   # run nothing: redo the BENCHMARKS.md section
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
from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.paired_stats import paired_test
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.runner import Orchestrator

ROOT = Path(__file__).resolve().parent.parent


async def arm(
    engine: VLLMEngine,
    problems: list[Problem],
    args: argparse.Namespace,
    *,
    n: int,
    run_tokens: int | None,
    rule: str = "agreement",
) -> dict[str, Any]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": {"name": "self_consistency", "n": n},
            "sampling": {"temperature": args.temperature, "max_tokens": MAX_TOKENS},
            "prompt": PROMPT,
            "step_delimiter": STEP_DELIMITER,
            "answer": ANSWER,
            "budget": {"run_generated_tokens": run_tokens},
            "allocation": {"probe_samples": args.probe, "rule": rule},
            "seed": args.seed,
            "concurrency": 200,
        },
        base_dir=ROOT,
    )
    await engine.llm.reset_prefix_cache()
    started = time.perf_counter()
    async with Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(problems)
        report = orchestrator.run_budget
    spent = sum(int(r.usage["generated_tokens"]) for r in results)
    shares = [r.detail.get("run_allocation", {}) for r in results]
    return {
        "accuracy": round(sum(bool(r.correct) for r in results) / len(results), 4),
        "generated_tokens": spent,
        "tokens_per_problem": round(spent / len(results), 1),
        "run_budget": report.to_dict() if report is not None else None,
        "errors": sum(r.error is not None for r in results),
        "extra_samples": [s.get("extra_samples") for s in shares],
        "probe_agreement": [s.get("probe_agreement") for s in shares],
        "correct": {r.problem_id: bool(r.correct) for r in results},
        "seconds": round(time.perf_counter() - started, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_file = DATA / f"{args.split}.jsonl"
    problems = load_problems(data_file, limit=args.problems)
    engine_config = VLLMEngineConfig(
        model=str(POLICY), dtype="float32", max_model_len=256, gpu_memory_utilization=0.04,
        block_size=32, max_num_seqs=512, seed=args.seed,
    )  # fmt: skip
    rows = []
    started = time.perf_counter()
    async with VLLMEngine(engine_config) as engine:
        for per_problem in args.budgets:
            run_tokens = per_problem * len(problems)
            adaptive = await arm(engine, problems, args, n=64, run_tokens=run_tokens)
            uniform = await arm(engine, problems, args, n=64, run_tokens=run_tokens, rule="uniform")
            probe = adaptive["run_budget"]["probe_tokens"]
            per_sample = probe / (args.probe * len(problems))
            plain_n = max(1, int(per_problem / per_sample))
            plain = await arm(engine, problems, args, n=plain_n, run_tokens=None)
            row = {
                "budget_per_problem": per_problem,
                "run_generated_tokens": run_tokens,
                "plain_n": plain_n,
                "arms": {"agreement": adaptive, "uniform": uniform, "plain": plain},
                "agreement_vs_uniform": paired_test(
                    adaptive["correct"], uniform["correct"], seed=args.seed
                ).to_dict(),
                "agreement_vs_plain": paired_test(
                    adaptive["correct"], plain["correct"], seed=args.seed
                ).to_dict(),
            }
            rows.append(row)
            print(
                json.dumps(
                    {
                        "budget": per_problem,
                        **{
                            k: (v["accuracy"], v["tokens_per_problem"])
                            for k, v in row["arms"].items()
                        },
                        "vs_uniform": row["agreement_vs_uniform"]["difference"],
                    }
                ),
                flush=True,
            )
    return {
        "split": args.split,
        "data_sha256": sha256(data_file),
        "final": args.final,
        "problems": len(problems),
        "probe": args.probe,
        "temperature": args.temperature,
        "seed": args.seed,
        "rows": rows,
        "total_seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python benchmarks/allocation.py", *sys.argv[1:]]),
    }


def section(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, generated from the results alone."""
    split, n = data["split"], data["problems"]
    order = [
        a
        for a in ("agreement", "uniform", "plain")
        if data["rows"] and a in data["rows"][0]["arms"]
    ]
    rows = []
    for r in data["rows"]:
        arms, test = r["arms"], r["agreement_vs_uniform"]
        rows.append(
            [r["budget_per_problem"]]
            + [f"{arms[a]['accuracy']:.3f} ({arms[a]['tokens_per_problem']})" for a in order]
            + [
                f"{100 * test['difference']:+.1f} "
                f"[{100 * test['ci95'][0]:+.1f}, {100 * test['ci95'][1]:+.1f}]",
                f"{test['only_a']} / {test['only_b']}",
                f"{test['p_value']:.3g}",
            ]
        )
    headers = (
        ["budget (tokens per problem)"]
        + [f"{a}: accuracy (tokens)" for a in order]
        + ["agreement - uniform (points, 95% CI)", "only agreement / only uniform", "McNemar p"]
    )
    only_a = sum(r["agreement_vs_uniform"]["only_a"] for r in data["rows"])
    only_b = sum(r["agreement_vs_uniform"]["only_b"] for r in data["rows"])
    ahead = sum(r["agreement_vs_uniform"]["difference"] > 0 for r in data["rows"])
    significant = sum(r["agreement_vs_uniform"]["p_value"] < 0.05 for r in data["rows"])
    return (
        f"## Run-level budget ({split} split): agreement allocation against an even split\n\n"
        f"{n} testbed {split} problems (sha256 `{data['data_sha256']}`), self-consistency at "
        f"T={data['temperature']}, a probe of {data['probe']} samples per problem, seed "
        f"{data['seed']}; {data['total_seconds'] / 60:.1f} min in all. A small-scale "
        f"{split}-split measurement. `agreement` and `uniform` spend the same run budget "
        "after the same probe (only the split differs); `plain` is self-consistency with the "
        "samples an even split pays for, no probe.\n"
        f"Command: `{data['command']}`.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Against the even split, the agreement split is ahead at {ahead} of "
        f"{len(data['rows'])} budgets; summed over the budgets, {only_a} problems were right "
        f"only with it and {only_b} only with the even split; paired tests (exact McNemar) "
        f"below p = 0.05: {significant} of {len(data['rows'])}.\n"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    add_split_arguments(parser)
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument(
        "--budgets", default="160,320,640", help="generated tokens per problem, on average"
    )
    parser.add_argument("--probe", type=int, default=4, help="probe samples per problem")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--render", action="store_true", help="run nothing: redo the section from the results"
    )
    args = parser.parse_args()
    check_split(parser, args)
    args.budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    if not args.budgets or min(args.budgets) < 1 or args.problems < 1 or args.probe < 1:
        parser.error("--budgets, --problems and --probe must be positive")
    return args


def main() -> None:
    args = parse_args()
    name = "allocation" if args.split == "val" else f"allocation_{args.split}"
    run_or_render(name, args.render, lambda: asyncio.run(run(args)), section)


if __name__ == "__main__":
    main()

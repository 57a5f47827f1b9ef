"""Arithmetic against ancestral sampling for self-consistency on the testbed (val only).

The claim of arithmetic sampling (Vilnis et al. 2023; Parashar et al. 2024 for
self-consistency): at equal N, fewer duplicate samples, and a vote at least as accurate.
Each row runs self-consistency with N samples per problem, ancestral or arithmetic, on the
same problems, seed and sampling, on one in-process vLLM engine, and reports accuracy, the
duplicate rate (share of a problem's samples whose tokens repeat an earlier sample's),
distinct answers per problem, coverage and generated tokens, with the per-problem outcomes
compared paired (wins and losses of arithmetic against ancestral).

    python benchmarks/arithmetic_sampling.py [--problems 60] [--n 4,8] [--seeds 0,1]
        [--temperature 1.0] [--top-p 1.0]
    python benchmarks/arithmetic_sampling.py --render   # run nothing: redo the section

Writes benchmarks/results/arithmetic_sampling.json and its BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import RESULTS, table, write_json, write_section
from benchmarks.strategies import ANSWER, DATA, MAX_TOKENS, POLICY, PROMPT, ROOT, STEP_DELIMITER
from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.paired_stats import mcnemar_exact
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.verifiers.reference import answers_match

AVERAGED = ("accuracy", "duplicate_rate", "distinct_answers", "coverage", "tokens_per_problem")


def duplicates(result: ProblemResult) -> tuple[float, int, bool]:
    """(share of samples repeating an earlier one, distinct answers, a right answer among them)."""
    assert result.graph is not None
    samples = [n for n in result.graph.nodes() if n.parent_id is not None]
    seen = {n.token_ids for n in samples}
    answers = {n.answer for n in samples if n.answer is not None}
    covered = any(answers_match(a, result.reference) for a in answers)
    return 1 - len(seen) / len(samples) if samples else 0.0, len(answers), covered


async def run_row(
    engine: VLLMEngine, problems: list[Problem], method: str, n: int, seed: int, args: Any
) -> dict[str, Any]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": {"name": "self_consistency", "n": n},
            "sampling": {
                "temperature": args.temperature,
                "top_p": args.top_p,
                "max_tokens": MAX_TOKENS,
                "method": method,
            },
            "prompt": PROMPT,
            "step_delimiter": STEP_DELIMITER,
            "answer": ANSWER,
            "seed": seed,
            "concurrency": 200,
        },
        base_dir=ROOT,
    )
    await engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    async with Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(problems)
    errors = [r.error for r in results if r.error]
    per = [duplicates(r) for r in results]
    return {
        "method": method,
        "n": n,
        "seed": seed,
        "accuracy": statistics.fmean(bool(r.correct) for r in results),
        "duplicate_rate": statistics.fmean(d for d, _, _ in per),
        "distinct_answers": statistics.fmean(a for _, a, _ in per),
        "coverage": statistics.fmean(c for _, _, c in per),
        "tokens_per_problem": statistics.fmean(r.usage.get("generated_tokens", 0) for r in results),
        "errors": len(errors),
        "correct": [bool(r.correct) for r in results],
        "seconds": round(time.perf_counter() - start, 1),
    }


def paired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Arithmetic against ancestral on the same problems, N and seed: wins and losses."""
    out = []
    for row in rows:
        if row["method"] != "arithmetic":
            continue
        base = next(
            r
            for r in rows
            if r["method"] == "ancestral" and (r["n"], r["seed"]) == (row["n"], row["seed"])
        )
        wins = sum(a and not b for a, b in zip(row["correct"], base["correct"], strict=True))
        losses = sum(b and not a for a, b in zip(row["correct"], base["correct"], strict=True))
        out.append({"n": row["n"], "seed": row["seed"], "wins": wins, "losses": losses})
    return out


async def main(args: argparse.Namespace) -> None:
    problems = load_problems(DATA / "val.jsonl", limit=args.problems)
    config = VLLMEngineConfig(
        model=str(POLICY), dtype="float32", max_model_len=256, gpu_memory_utilization=0.15,
        block_size=32, max_num_seqs=512,
    )  # fmt: skip
    rows = []
    async with VLLMEngine(config) as engine:
        for seed in args.seeds:
            for n in args.n:
                for method in ("ancestral", "arithmetic"):
                    row = await run_row(engine, problems, method, n, seed, args)
                    rows.append(row)
                    print(
                        f"seed={seed} N={n} {method:10} acc={row['accuracy']:.3f} "
                        f"dup={row['duplicate_rate']:.3f} answers={row['distinct_answers']:.2f} "
                        f"cov={row['coverage']:.3f} tok={row['tokens_per_problem']:.0f} "
                        f"err={row['errors']} {row['seconds']}s",
                        flush=True,
                    )
    summary = []
    for n in args.n:
        for method in ("ancestral", "arithmetic"):
            mine = [r for r in rows if (r["n"], r["method"]) == (n, method)]
            summary.append(
                {
                    "n": n,
                    "method": method,
                    **{key: statistics.fmean(r[key] for r in mine) for key in AVERAGED},
                }
            )
    data = {
        "split": "val",
        "problems": len(problems),
        "seeds": args.seeds,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "rows": rows,
        "summary": summary,
        "paired": paired(rows),
        "command": " ".join(["python benchmarks/arithmetic_sampling.py", *sys.argv[1:]]),
    }
    for line in summary:
        print(json.dumps(line))
    for line in data["paired"]:
        print(json.dumps(line))
    write_json("arithmetic_sampling", data)


def command(data: dict[str, Any]) -> str:
    """The command that wrote the results (rebuilt from their parameters if not recorded)."""
    if "command" in data:
        return f"`{data['command']}`"
    ns = ",".join(str(n) for n in dict.fromkeys(line["n"] for line in data["summary"]))
    seeds = ",".join(str(s) for s in data["seeds"])
    return (
        f"`python benchmarks/arithmetic_sampling.py --problems {data['problems']} --n {ns} "
        f"--seeds {seeds} --temperature {data['temperature']} --top-p {data['top_p']}` "
        "(rebuilt from the recorded parameters)"
    )


def section(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, generated from the results alone."""
    split, seeds = data["split"], data["seeds"]
    rows = [
        [line["n"], line["method"]]
        + [f"{line[key]:.3f}" for key in AVERAGED[:-1]]
        + [f"{line['tokens_per_problem']:.1f}"]
        for line in data["summary"]
    ]
    headers = ["N", "sampling", "accuracy", "duplicate rate", "distinct answers", "coverage",
               "tokens per problem"]  # fmt: skip
    lines = [
        f"## Arithmetic against ancestral sampling ({split} split): self-consistency\n",
        f"{data['problems']} testbed {split} problems, self-consistency with N samples per "
        f"problem at T={data['temperature']}, top-p {data['top_p']}, run seeds "
        f"{', '.join(map(str, seeds))}, one in-process vLLM engine; means over the seeds. A "
        f"small-scale {split}-split measurement.\nCommand: {command(data)}.\n",
        table(headers, rows) + "\n",
    ]
    for n in dict.fromkeys(line["n"] for line in data["summary"]):
        by = {line["method"]: line for line in data["summary"] if line["n"] == n}
        if not {"ancestral", "arithmetic"} <= set(by):
            continue
        anc, ari = by["ancestral"], by["arithmetic"]
        pairs = [p for p in data["paired"] if p["n"] == n]
        wins, losses = sum(p["wins"] for p in pairs), sum(p["losses"] for p in pairs)
        lines.append(
            f"At N={n} arithmetic sampling repeats {ari['duplicate_rate']:.3f} of the samples "
            f"against {anc['duplicate_rate']:.3f} ancestral, with accuracy "
            f"{ari['accuracy']:.3f} against {anc['accuracy']:.3f} "
            f"({_points(ari['accuracy'] - anc['accuracy'])} points); paired on the same "
            f"problems and seed, summed over {len(pairs)} seeds: {wins} wins, {losses} losses "
            f"(exact McNemar on the sums, p = {mcnemar_exact(wins, losses):.3g}; the seeds share "
            "the problems, so the p-value is only indicative)."
        )
    return "\n".join(lines) + "\n"


def _points(difference: float) -> str:
    return f"{round(100 * difference, 1) + 0.0:+.1f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults, description=__doc__.split("\n")[0]
    )
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--n", default="4,8", help="samples per problem, comma-separated")
    parser.add_argument("--seeds", default="0,1", help="run seeds, comma-separated")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument(
        "--render", action="store_true", help="run nothing: redo the section from the results"
    )
    parsed = parser.parse_args()
    parsed.n = [int(x) for x in parsed.n.split(",")]
    parsed.seeds = [int(x) for x in parsed.seeds.split(",")]
    if not parsed.render:
        asyncio.run(main(parsed))
    body = section(json.loads((RESULTS / "arithmetic_sampling.json").read_text()))
    print(body)
    write_section("arithmetic_sampling", body)

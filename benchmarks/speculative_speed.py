"""Tokens per second of multi-sample speculative decoding against plain sampling (val split).

Both arms write n exact samples at T=1 per problem on one in-process vLLM engine (testbed
policy): ``self_consistency`` samples them in one request; ``speculative_consensus`` drafts
from the other samples and verifies by prompt log-probabilities. Written tokens (the
samples' lengths, drafted or generated) per wall second, once with every problem in flight
(throughput) and once one problem at a time (latency). Validation split only.

    python benchmarks/speculative_speed.py [--problems 40] [--n 8] [--seed 0]
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

from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
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
    OUT.write_text(json.dumps({"problems": len(problems), "n": args.n, "rows": rows}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(main(parser.parse_args()))

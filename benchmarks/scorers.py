"""Reward-model scoring: throughput per backend, and what memoisation saves in a search.

1. Throughput: the same nodes (step prefixes of testbed solutions, right and corrupted) are
   scored through each backend (vLLM in-process pooling, a vLLM pooling server over HTTP with
   its /tokenize or with the tokenizer loaded locally, transformers), as concurrent searches
   would send them: one ``score`` call per problem, all at once, through the shared
   micro-batching queue. The step-prefix cache is off here,
   so every node costs a model pass. Reported: nodes scored per second, mean batch size.
2. Memoisation: a step-level search on the testbed with the PRM as its scorer. Reported:
   how many node scores the strategy asked for, how many the per-node memo answered, how many
   steps the PRM's step-prefix cache answered, and how many sequences reached the model.

The PRM is examples/testbed/models/prm when it exists, else a tiny random token classifier
(its scores are meaningless, its cost is not). Results go to benchmarks/results/scorers.json.

    python benchmarks/scorers.py [--nodes 256] [--backends vllm,http,torch] [--problems 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import table, write_json, write_section
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_server import VLLMServer
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.steps import split_steps
from branchwise.rewards.prm import ProcessRewardModel, RewardModelConfig
from branchwise.strategies.base import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
TESTBED = ROOT / "examples" / "testbed"
VAL = TESTBED / "data" / "val.jsonl"


DEFAULT_BACKENDS = "vllm,http,http_local_tokenizer,torch"
DELIMITER = "\n\n"  # the testbed's steps are separated by a blank line
TESTBED_RECIPE: dict[str, Any] = {
    "prompt": {"style": "chat"},  # the policy's ChatML template (its default system prompt)
    "step_delimiter": DELIMITER,
    "answer": {"method": "boxed"},
}


def prm_folder(scratch: Path) -> tuple[Path, str, str]:
    """The PRM folder, a description, and its format (the testbed's is Qwen2.5-Math-PRM's)."""
    trained = TESTBED / "models" / "prm"
    if (trained / "config.json").exists():
        return trained, "testbed PRM (Qwen2.5-Math-PRM format)", "qwen_prm"
    from tests.tiny_prm import make_tiny_prm

    tiny = make_tiny_prm(scratch / "tiny_prm")
    return tiny, "tiny random PRM (testbed PRM missing)", "token_classify"


def step_tag_id(folder: Path) -> int:
    from transformers import AutoTokenizer

    token_id = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("<extra_0>")
    assert isinstance(token_id, int)  # one token in, one id out
    return token_id


def workload(problems: list[Problem], nodes: int) -> list[tuple[Problem, list[Candidate]]]:
    """Every step prefix of each reference solution, plus a corrupted copy of each."""
    per_problem: dict[str, list[Candidate]] = {p.id: [] for p in problems}
    made = 0
    while made < nodes:
        for p in problems:
            lines = list(split_steps(p.solution or "", DELIMITER))
            depth = 1 + made // len(problems) % len(lines)
            steps = list(lines[:depth])
            if made // (len(problems) * len(lines)) % 2:  # the second pass corrupts
                steps[-1] = steps[-1].replace("= ", "= 1", 1)
            per_problem[p.id].append(
                Candidate(
                    node_id=f"r.{made}",
                    prompt=p.question,
                    steps=tuple(steps),
                    answer=None,
                    terminal=False,
                )
            )
            made += 1
            if made >= nodes:
                break
    return [(p, per_problem[p.id]) for p in problems if per_problem[p.id]]


async def throughput(
    config: RewardModelConfig, work: list[tuple[Problem, list[Candidate]]]
) -> dict[str, Any]:
    scorer = ProcessRewardModel(config, ScorerResources())
    try:
        await scorer.score(work[0][0], work[0][1][:4])  # warm-up (and start the engine)
        scorer.stats.sequences = 0
        batches_before = scorer._batcher.stats.batches
        start = time.perf_counter()
        results = await asyncio.gather(*(scorer.score(p, cands) for p, cands in work))
        seconds = time.perf_counter() - start
        failed = sum(1 for scores in results for s in scores if not s.ok)
        nodes = sum(len(c) for _, c in work)
        batches = scorer._batcher.stats.batches - batches_before
        return {
            "nodes": nodes,
            "seconds": seconds,
            "nodes_per_second": nodes / seconds,
            "failed": failed,
            "mean_batch": scorer.stats.sequences / max(batches, 1),
        }
    finally:
        await scorer.aclose()


def prm_server(folder: Path, port: int, log: Path, fmt: str) -> VLLMServer:
    """A pooling-runner vLLM server for the PRM on loopback (started by the caller)."""
    pooler: dict[str, Any] = {"task": "token_classify"}
    if fmt == "qwen_prm":  # pool the rows at the step tag only, as the Qwen PRM is read
        pooler["step_tag_id"] = step_tag_id(folder)
    args = [
        "--runner", "pooling", "--pooler-config", json.dumps(pooler),
        "--dtype", "float32", "--max-model-len", "256",
        "--gpu-memory-utilization", "0.1", "--enforce-eager",
    ]  # fmt: skip
    return VLLMServer(folder, served_name="prm", args=args, log_path=log, port=port)


async def memoisation(
    folder: Path, fmt: str, problems: list[Problem], engine: str
) -> dict[str, Any]:
    strategy: dict[str, Any] = (
        {"name": "beam_search", "beam_width": 4, "expansions": 4, "scorer": "prm"}
        if "beam_search" in STRATEGIES.names()
        else {"name": "best_of_n", "n": 16, "scorer": "prm"}
    )
    engine_cfg: dict[str, Any] = {"kind": "scripted", "error_rate": 0.3}
    if engine == "vllm":
        engine_cfg = {
            "kind": "vllm",
            "model": str(TESTBED / "models" / "policy"),
            "dtype": "float32",
            "max_model_len": 256,
            "gpu_memory_utilization": 0.1,
        }
    recipe = parse_recipe(
        {
            "engine": engine_cfg,
            "strategy": strategy,
            "scorers": [
                {
                    "kind": "prm",
                    "format": fmt,
                    "model": str(folder),
                    "backend": "torch",
                    "threads": 1,
                }
            ],
            **TESTBED_RECIPE,
            "sampling": {"temperature": 1.0, "max_tokens": 48},
            "concurrency": len(problems),
        }
    )
    prm = ProcessRewardModel(recipe.scorers[0], ScorerResources())  # type: ignore[arg-type]
    built = recipe.engine.build(recipe.base_dir)
    if engine == "scripted":
        built.learn({p.question: p.solution or "" for p in problems})  # type: ignore[attr-defined]
    async with built, Orchestrator(recipe, engine=built, scorers={"prm": prm}) as orchestrator:
        results = await orchestrator.run(problems)
    failed = [r.error for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} searches failed, first: {failed[0]}")
    asked = sum(
        int(r.usage.get("scorer_calls", 0)) + int(r.usage.get("scorer_cache_hits", 0))
        for r in results
    )
    memo_hits = sum(int(r.usage.get("scorer_cache_hits", 0)) for r in results)
    steps = prm.stats.steps_scored + prm.stats.steps_reused
    return {
        "strategy": strategy["name"],
        "engine": engine,
        "problems": len(problems),
        "node_scores_asked": asked,
        "answered_by_node_memo": memo_hits,
        "steps_needed": steps,
        "steps_from_prefix_cache": prm.stats.steps_reused,
        "sequences_sent": prm.stats.sequences,
        "share_of_steps_saved": prm.stats.steps_reused / steps if steps else 0.0,
        "share_of_node_requests_saved": memo_hits / asked if asked else 0.0,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="bw-bench-"))
    folder, which, fmt = prm_folder(scratch)
    problems = load_problems(VAL, limit=args.problems)
    # Each reference solution gives ~8 distinct nodes (its prefixes, right and corrupted).
    work = workload(load_problems(VAL, limit=max(args.problems, args.nodes // 6)), args.nodes)
    data: dict[str, Any] = {"prm": which, "machine": f"{platform.machine()}, {os.cpu_count()} cpus"}
    base = {
        "kind": "prm",
        "format": fmt,
        "model": str(folder),
        "cache_steps": 0,
        "max_model_len": 256,
    }
    if args.backends is None:
        chat = fmt == "qwen_prm"  # rendered with the RM's chat template: tokenized here
        args.backends = "vllm,http_local_tokenizer,torch" if chat else DEFAULT_BACKENDS
    backends = args.backends.split(",")
    server = None
    if any(b.startswith("http") for b in backends):
        server = prm_server(folder, args.port, scratch / "server.log", fmt)
        server.start()
    try:
        for backend in backends:
            extra: dict[str, Any] = {"backend": backend.split("_")[0]}
            if backend.startswith("http"):
                extra.update(base_url=f"http://127.0.0.1:{args.port}", model="prm")
            if backend == "http_local_tokenizer":
                extra["tokenizer"] = str(folder)
            if backend == "torch":
                extra["threads"] = 2
            config = RewardModelConfig(**{**base, **extra})
            data[backend] = await throughput(config, work)
            print(f"{backend}: {data[backend]}", flush=True)
    finally:
        if server is not None:
            server.stop()
    data["memoisation"] = await memoisation(folder, fmt, problems, args.engine)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--nodes", type=int, default=256)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument(
        "--backends",
        default=None,
        help="http asks the server to tokenize; http_local_tokenizer encodes locally (default: "
        "all that fit the PRM's format; a chat-rendered format such as qwen_prm needs the "
        "local tokenizer over HTTP)",
    )
    parser.add_argument(
        "--engine",
        choices=["scripted", "vllm"],
        default="scripted",
        help="policy for the memoisation run",
    )
    parser.add_argument("--port", type=int, default=8391)
    args = parser.parse_args()
    data = asyncio.run(main_async(args))
    rows = [
        [
            b,
            data[b]["nodes"],
            f"{data[b]['seconds']:.2f}",
            f"{data[b]['nodes_per_second']:.1f}",
            f"{data[b]['mean_batch']:.1f}",
            data[b]["failed"],
        ]
        for b in args.backends.split(",")
    ]
    backends = table(["backend", "nodes", "seconds", "nodes/s", "mean batch", "failed"], rows)
    memo = data["memoisation"]
    memo_table = table(
        ["measure", "value"],
        [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in memo.items()],
    )
    print(f"PRM: {data['prm']}")
    print(backends)
    print(memo_table)
    print(f"results: {write_json('scorers', data)}")
    command = " ".join(["python benchmarks/scorers.py", *sys.argv[1:]])
    write_section(
        "scorers",
        "## Scorer throughput and memoisation\n\n"
        f"PRM: {data['prm']} ({data['machine']}). Command: `{command}`.\n\n"
        f"Nodes scored per second by backend:\n\n{backends}\n\n"
        f"Scoring requests saved in a {args.engine}-policy search run:\n\n{memo_table}\n",
    )


if __name__ == "__main__":
    main()

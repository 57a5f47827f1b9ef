"""Self-consistency's samples per problem, for benchmarks that replay a rule on them.

One in-process vLLM run with the strategies benchmark's settings (testbed policy, chat
prompt, T = 1, boxed answers); each problem's finished paths come back in sampling order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.strategies import ANSWER, EVAL, MAX_TOKENS, POLICY, PROBLEMS, PROMPT, ROOT
from branchwise.core.graph import Node, path_key
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.runner import Orchestrator


async def sample_problems(
    problems: int, n: int, seed: int, *, logprobs: int | None = None, dataset: Path = EVAL
) -> tuple[list[list[Node]], list[str | None]]:
    """(each problem's ``n`` sampled paths in order, each problem's reference answer)."""
    sampling: dict[str, object] = {"temperature": 1.0, "max_tokens": MAX_TOKENS}
    if logprobs is not None:
        sampling["logprobs"] = logprobs
    recipe = parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": {"name": "self_consistency", "n": n},
            "sampling": sampling,
            "prompt": PROMPT,
            "answer": ANSWER,
            "seed": seed,
            "concurrency": 200,
        },
        base_dir=ROOT,
    )
    config = VLLMEngineConfig(
        model=str(POLICY), dtype="float32", max_model_len=256, gpu_memory_utilization=0.15,
        block_size=32, max_num_seqs=512, seed=seed,
    )  # fmt: skip
    async with VLLMEngine(config) as engine, Orchestrator(recipe, engine=engine) as orchestrator:
        results = await orchestrator.run(load_problems(dataset, limit=problems))
    paths: list[list[Node]] = []
    for result in results:
        assert result.graph is not None
        finished = result.graph.terminals(include_pruned=True)
        paths.append(sorted(finished, key=lambda node: path_key(node.id)))
    return paths, [r.reference for r in results]


def replay_args(doc: str | None) -> argparse.Namespace:
    """A replay's command line: how many eval problems, and the seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=HelpWithDefaults)
    parser.add_argument("--problems", type=int, default=PROBLEMS)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()

"""RSD on real vLLM with two in-process engines: the testbed policy drafts, the target
policy (built, started and stopped by the orchestrator from the recipe's `engines`) rewrites
the steps the exact step checker rejects. Small: four val problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, REPO, TESTBED, EngineLoop

pytestmark = pytest.mark.vllm
TARGET = REPO / "examples" / "testbed" / "models" / "target"
VAL = Path(REPO / "examples" / "testbed" / "data" / "val.jsonl")


def test_rsd_drafts_with_one_engine_and_rewrites_with_the_other(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    if not (TARGET / "config.json").exists():
        pytest.fail(f"testbed target policy missing at {TARGET}; see examples/testbed/README.md")
    engine = {"kind": "vllm", "dtype": "float32", "max_model_len": 256, "block_size": 32}
    recipe = parse_recipe(
        {
            **TESTBED,
            "engine": {**engine, "model": str(POLICY), "gpu_memory_utilization": 0.1},
            "engines": {"target": {**engine, "model": str(TARGET), "gpu_memory_utilization": 0.05}},
            "strategy": {
                "name": "rsd",
                "target_engine": "target",
                "scorer": "prm",
                "threshold": 0.5,
                "step_max_tokens": 32,
            },
            "scorers": [{"kind": "arithmetic_steps", "name": "prm"}],
            "sampling": {"temperature": 1.0, "max_tokens": 96},
            "seed": 3,
        }
    )
    problems = load_problems(VAL, limit=4)

    async def go() -> tuple[list[ProblemResult], int]:
        # the draft is the session's engine; the target is built from the recipe
        async with Orchestrator(recipe, engine=vllm_engine) as orchestrator:
            results = await orchestrator.run(problems)
            target = orchestrator.engines["target"]
            assert isinstance(target, VLLMEngine)
            return results, target.running_requests()

    results, target_running = engine_loop.run(go())
    assert target_running == 0 and vllm_engine.running_requests() == 0
    calls = {"default": 0, "target": 0}
    for r in results:
        assert r.error is None, r.error
        assert r.answer is not None and r.node_id is not None
        for name in calls:
            calls[name] += int(r.usage[f"engines.{name}.engine_calls"])
        by_engine = sum(int(r.usage[f"engines.{n}.generated_tokens"]) for n in calls)
        assert by_engine == r.usage["generated_tokens"]
        assert r.detail["target_steps"] == r.usage["engines.target.engine_calls"]
        graph = r.graph
        assert graph is not None
        # the answer's path: every step either a kept draft (the checker's value >= 0.5)
        # or a target step written where a draft was pruned
        for node in graph.path(r.node_id)[1:]:
            pruned = [c for c in graph.children(node.parent_id or "") if c.id != node.id]
            assert all(graph.state(c.id).status == "pruned" for c in pruned)
    assert calls["default"] > 0 and calls["target"] > 0  # both engines wrote steps

"""Refactors change no behaviour on real vLLM either: graphs, answers and tokens are pinned.

The scripted-engine snapshot (``tests/unit/test_behaviour_snapshot.py``) pins every variant;
this one pins every contract config on the session's in-process vLLM engine with the testbed
policy and its exact step checker, recorded before the search kernel was rebuilt. Problems run
one at a time, so the engine's batches (and its floating-point sums) are the same in every run.
First-finish and cover pruning are left out: which sample finishes first is first-finish's
algorithm, and cover pruning aborts streams whose tokens written before the abort depend on
how fast the engine streams (two recordings of the same code differed there, and only
there); so is rsd, whose contract recipe names scripted engines beside the policy (its vLLM
test is test_rsd_vllm.py). Strategies added after the recording are observed once it is
re-recorded. Re-record a deliberate change with ``BRANCHWISE_RECORD_SNAPSHOT=1`` and say why
in the commit. Last re-recorded with the engine's stop tokens on (stop_tokens.py): the 26
entries recorded before them came out unchanged, and osca, power_sampling and
speculative_consensus joined.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, TESTBED, EngineLoop
from tests.unit.strategy_configs import STRATEGY_CONFIGS, recipe_extras
from tests.unit.test_behaviour_snapshot import observation

pytestmark = pytest.mark.vllm
SNAPSHOT = Path(__file__).with_name("behaviour_snapshot_vllm.json")
EVAL = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "data" / "eval.jsonl"
TIMING_DEPENDENT = {"first_finish", "cover_pruning"}
# Strategies whose contract recipe names other engines (scripted ones, which do not share the
# testbed's tokenizer); rsd runs on two vLLM engines in tests/integration/test_rsd_vllm.py.
NEEDS_OTHER_ENGINES = {"rsd"}
SCORERS = [
    {"kind": "arithmetic_steps", "name": "prm"},
    {"kind": "reference_answer", "name": "oracle"},
]


def observe(loop: EngineLoop, engine: VLLMEngine, name: str) -> list[dict[str, Any]]:
    recipe = parse_recipe(
        {
            **TESTBED,
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": STRATEGY_CONFIGS[name],
            **recipe_extras(STRATEGY_CONFIGS[name]),
            "scorers": SCORERS,
            "sampling": {"temperature": 1.0, "max_tokens": 64, "logprobs": 5},
            "budget": {"max_generated_tokens": 400},
            "concurrency": 1,
            "seed": 11,
        }
    )

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(load_problems(EVAL, limit=2))

    return [observation(result) for result in loop.run(go())]


def test_every_contract_config_gives_the_recorded_graphs_on_vllm(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    recording = bool(os.environ.get("BRANCHWISE_RECORD_SNAPSHOT"))
    recorded = {} if recording else json.loads(SNAPSHOT.read_text())
    # Pinned: the recorded configs (a new strategy joins when the snapshot is re-recorded).
    names = sorted(
        name
        for name in STRATEGY_CONFIGS
        if name not in TIMING_DEPENDENT | NEEDS_OTHER_ENGINES and (recording or name in recorded)
    )
    observed = {name: observe(engine_loop, vllm_engine, name) for name in names}
    if recording:
        SNAPSHOT.write_text(json.dumps(observed, indent=1) + "\n")
        recorded = observed
    moved = [name for name in sorted(recorded) if observed.get(name) != recorded[name]]
    assert not moved, f"behaviour changed on vLLM for: {moved}"

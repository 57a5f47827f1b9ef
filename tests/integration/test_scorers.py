"""Reward models through every backend, and a PRM engine beside the policy engine.

The PRM under test is a tiny random Llama token classifier built here (the token_classify
format): the three backends (vLLM in-process pooling, a vLLM pooling server over HTTP,
transformers) must give the same step scores within ABS_TOL, which covers float32 kernel
differences between vLLM's CPU path and torch. The testbed's own PRM (Qwen2.5-Math-PRM format)
is checked in tests/testbed and used by tests/integration/test_step_strategies.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.rewards.prm import ProcessRewardModel, RewardModelConfig
from tests import reward_cards as cards
from tests.integration.conftest import EngineLoop, serve
from tests.tiny_prm import make_tiny_prm

pytestmark = pytest.mark.vllm

ABS_TOL = 1e-4
QUESTION = "Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?"
PROBLEM = Problem(id="t0", question=QUESTION, answer="54")
PATHS = [
    ("7+15=22\n", "22-4=18\n", "18*3=54\n", "Answer: 54"),
    ("7+15=22\n", "22-4=17\n", "17*3=51\n", "Answer: 51"),
    ("7+15=23\n",),
    ("7+15=22\n", "22-4=18\n"),
]


def candidates() -> list[Candidate]:
    return [
        Candidate(
            node_id=f"r.{i}",
            prompt=QUESTION + "\n",
            steps=steps,
            answer=None,
            terminal=steps[-1].startswith("Answer"),
        )
        for i, steps in enumerate(PATHS)
    ]


@pytest.fixture(scope="module")
def prm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token-classification PRM (today's format; the testbed PRM is in the Qwen format and
    is covered by tests/testbed and tests/integration/test_step_strategies.py)."""
    return make_tiny_prm(tmp_path_factory.mktemp("tiny_prm"))


def _config(folder: Path, **extra: object) -> RewardModelConfig:
    values = {
        "kind": "prm",
        "model": str(folder),
        "max_model_len": 256,
        "gpu_memory_utilization": 0.1,
        **extra,
    }
    return RewardModelConfig(**values)


@pytest.fixture(scope="module")
def prm_server(prm_folder: Path) -> Iterator[str]:
    """`vllm serve` equivalent with the pooling runner on loopback."""
    args = [
        "--runner", "pooling", "--pooler-config", '{"task": "token_classify"}',
        "--dtype", "float32", "--max-model-len", "256",
        "--gpu-memory-utilization", "0.1", "--enforce-eager",
    ]  # fmt: skip
    yield from serve(prm_folder, "prm", args)


@pytest.fixture(scope="module")
def vllm_prm(prm_folder: Path, engine_loop: EngineLoop) -> Iterator[ProcessRewardModel]:
    """The in-process pooling PRM; it lives on the session's engine loop beside the policy."""
    prm = ProcessRewardModel(_config(prm_folder, backend="vllm"), ScorerResources())
    yield prm
    engine_loop.run(prm.aclose())


def test_vllm_http_and_torch_give_the_same_step_scores(
    prm_folder: Path,
    prm_server: str,
    engine_loop: EngineLoop,
    vllm_engine: VLLMEngine,
    vllm_prm: ProcessRewardModel,
) -> None:
    torch_prm = ProcessRewardModel(_config(prm_folder, backend="torch"), ScorerResources())
    http_prm = ProcessRewardModel(
        _config(prm_folder, backend="http", base_url=prm_server, model="prm"), ScorerResources()
    )

    async def policy_and_prm_together() -> tuple[list[object], list[object]]:
        """The policy's AsyncLLM and the PRM's AsyncLLM serve at once on one event loop."""
        request = GenerationRequest(
            request_id="prm-it",
            prompt_token_ids=await vllm_engine.tokenize(QUESTION + "\n"),
            sampling=SamplingSpec(max_tokens=48, temperature=1.0, seed=1),
            n=4,
        )
        generated, scores = await asyncio.gather(
            vllm_engine.generate(request), vllm_prm.score(PROBLEM, candidates())
        )
        return list(generated.completions), list(scores)

    completions, by_vllm = engine_loop.run(policy_and_prm_together())
    by_torch = asyncio.run(torch_prm.score(PROBLEM, candidates()))
    by_http = asyncio.run(http_prm.score(PROBLEM, candidates()))
    assert len(completions) == 4
    worst = {"vllm": 0.0, "http": 0.0}
    for v, h, t, steps in zip(by_vllm, by_http, by_torch, PATHS, strict=True):
        assert v.ok and h.ok and t.ok, (v.error, h.error, t.error)  # type: ignore[attr-defined]
        assert len(t.step_values) == len(steps)
        assert v.step_values == pytest.approx(t.step_values, abs=ABS_TOL)  # type: ignore[attr-defined]
        assert h.step_values == pytest.approx(t.step_values, abs=ABS_TOL)  # type: ignore[attr-defined]
        # format token_classify, read the plain way (tests/reward_cards.py)
        card = cards.token_classify(prm_folder, QUESTION + "\n", steps)
        assert v.step_values == pytest.approx(card, abs=ABS_TOL)  # type: ignore[attr-defined]
        assert h.step_values == pytest.approx(card, abs=ABS_TOL)  # type: ignore[attr-defined]
        for name, got in (("vllm", v), ("http", h)):
            gaps = [abs(a - b) for a, b in zip(got.step_values, card, strict=True)]  # type: ignore[attr-defined]
            worst[name] = max(worst[name], *gaps)
    print("token_classify max |diff| vs the plain reading:", worst)


def test_a_child_is_scored_from_its_parents_cached_steps(
    engine_loop: EngineLoop, vllm_prm: ProcessRewardModel
) -> None:
    parent = Candidate(
        node_id="r.7",
        prompt="Bob has 3 cups. He doubles them. How many?\n",
        steps=("3*2=6\n",),
        answer=None,
        terminal=False,
    )
    child = Candidate(
        node_id="r.7.0",
        prompt=parent.prompt,
        steps=(*parent.steps, "Answer: 6"),
        answer="6",
        terminal=True,
    )
    before = vllm_prm.stats.steps_scored, vllm_prm.stats.steps_reused
    (first,) = engine_loop.run(vllm_prm.score(PROBLEM, [parent]))
    (second,) = engine_loop.run(vllm_prm.score(PROBLEM, [child]))
    assert vllm_prm.stats.steps_scored - before[0] == 2  # one step each time
    assert vllm_prm.stats.steps_reused - before[1] == 1
    assert second.step_values[0] == first.step_values[0]

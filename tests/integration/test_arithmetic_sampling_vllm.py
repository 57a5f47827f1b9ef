"""Arithmetic sampling on real vLLM: the logits processor decodes each sample from its code."""

from __future__ import annotations

import math

import pytest
import torch

from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from branchwise.orchestrator.engines.vllm_code_book import pick_token, sampling_distribution
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.prompting import ChatMessage
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, TESTBED, EngineLoop
from tests.integration.test_sampling_strategies import EVAL

pytestmark = pytest.mark.vllm


def test_code_book_distribution_follows_vllms_filters() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 3.0])
    plain = sampling_distribution(logits, 1.0, 1.0, 0, 0.0)
    assert torch.allclose(plain, torch.softmax(logits.double(), -1))
    top2 = sampling_distribution(logits, 0.5, 1.0, 2, 0.0)
    assert top2.nonzero().flatten().tolist() == [0, 4]
    nucleus = sampling_distribution(logits, 1.0, 0.6, 0, 0.0)  # 0.64 of the mass is token 4
    assert nucleus.nonzero().flatten().tolist() == [4]
    # tokens in id order: token 0 owns [0, p0), token 1 [p0, p0 + p1), ...
    token, rest = pick_token(plain, float(plain[0]) + 0.5 * float(plain[1]))
    assert token == 1 and rest == pytest.approx(0.5)
    assert pick_token(plain, math.nextafter(1.0, 0.0))[0] == 4


def test_code_points_decide_samples_and_a_recipe_runs(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    async def sample(seed: int, codes: tuple[float, ...]) -> list[tuple[int, ...]]:
        prompt = await vllm_engine.tokenize_chat([ChatMessage("user", "What is 12 + 7 * 3?")])
        spec = SamplingSpec(max_tokens=40, temperature=1.0, seed=seed, logprobs=0)
        request = GenerationRequest(f"code-{seed}-{codes}", prompt.token_ids, spec, 4, codes=codes)
        result = await vllm_engine.generate(request)
        # logprobs stay the model's own (raw), not the forced distribution's 0.0
        assert any(lp < -1e-3 for c in result.completions for lp in c.token_logprobs)
        return [c.token_ids for c in result.completions]

    codes = (0.05, 0.3, 0.55, 0.8)
    first = engine_loop.run(sample(1, codes))
    assert engine_loop.run(sample(2, codes)) == first  # the code decides, not the seed
    assert len(set(first)) > 1
    assert engine_loop.run(sample(1, (0.9, 0.3, 0.55, 0.8)))[1:] == first[1:]

    recipe = parse_recipe(
        {
            **TESTBED,
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": {"name": "self_consistency", "n": 4},
            "sampling": {"temperature": 1.0, "max_tokens": 96, "method": "arithmetic"},
            "seed": 3,
        }
    )

    async def solve() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=vllm_engine) as orchestrator:
            return await orchestrator.run(load_problems(EVAL, limit=3))

    results = engine_loop.run(solve())
    for result in results:
        assert result.error is None and result.graph is not None
        in_graph = sum(n.generated_tokens for n in result.graph.nodes() if n.parent_id)
        assert in_graph == result.usage["generated_tokens"]  # the fan-out is paid in full
    assert vllm_engine.running_requests() == 0

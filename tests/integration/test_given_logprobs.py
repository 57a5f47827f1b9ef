"""Log-probabilities of given tokens on real vLLM: prompt log-probabilities of a forced
continuation agree with what sampling reported for the same tokens, and the strategies that
need them run end to end."""

from __future__ import annotations

import pytest

from branchwise.orchestrator.engines.types import GenerationRequest, LogprobRequest, SamplingSpec
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import Recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import EngineLoop
from tests.integration.test_engines import _chat_prompt, _problems, _recipe

pytestmark = pytest.mark.vllm


def test_scored_tokens_match_their_sampled_logprobs_and_the_strategies_run(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    problem = _problems(1)[0]

    async def sample_then_score() -> tuple[tuple[float, ...], tuple[float, ...]]:
        prompt = await _chat_prompt(vllm_engine, problem)
        spec = SamplingSpec(max_tokens=40, temperature=1.0, seed=3, logprobs=0)
        sampled = (await vllm_engine.generate(GenerationRequest("lp-s", prompt, spec))).completions
        scored = await vllm_engine.logprobs_of(LogprobRequest("lp-g", prompt, sampled[0].token_ids))
        return sampled[0].token_logprobs, scored.token_logprobs

    sampled, scored = engine_loop.run(sample_then_score())
    assert len(scored) == len(sampled) > 0
    assert scored == pytest.approx(sampled, abs=2e-3)  # raw log p both ways

    problems = _problems(2)
    for strategy in (
        {"name": "power_sampling", "blocks": 2, "mcmc_steps": 2},
        {"name": "speculative_consensus", "n": 3, "chunk_tokens": 16},
    ):

        async def go(recipe: Recipe) -> list[ProblemResult]:
            async with Orchestrator(recipe, engine=vllm_engine) as orchestrator:
                return await orchestrator.run(problems)

        for result in engine_loop.run(go(_recipe(strategy))):
            assert result.error is None, result.error
            assert result.usage["prompt_tokens"] > 0

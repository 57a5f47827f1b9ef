"""Real vLLM, in process and as an OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from pathlib import Path

import pytest

from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.types import (
    GenerationRequest,
    GenerationResult,
    SamplingSpec,
)
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.prompting import PromptSpec
from branchwise.orchestrator.recipe import Recipe, parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, TESTBED, EngineLoop

pytestmark = pytest.mark.vllm
EVAL = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "data" / "eval.jsonl"


def _problems(count: int) -> list[Problem]:
    return load_problems(EVAL, limit=count)


def _recipe(strategy: dict[str, object], **extra: object) -> Recipe:
    data: dict[str, object] = {
        **TESTBED,
        "engine": {"kind": "vllm", "model": str(POLICY)},
        "strategy": strategy,
        "sampling": {"temperature": 1.0, "max_tokens": 96},
        "seed": 11,
    }
    data.update(extra)
    return parse_recipe(data)


def _solve(
    loop: EngineLoop, recipe: Recipe, engine: object, problems: list[Problem]
) -> list[ProblemResult]:
    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:  # type: ignore[arg-type]
            return await orchestrator.run(problems)

    return loop.run(go())


async def _chat_prompt(engine: VLLMEngine, problem: Problem) -> tuple[int, ...]:
    """The testbed's chat prompt for ``problem``, as the engine's token ids."""
    spec = PromptSpec.model_validate(TESTBED["prompt"])
    return (await engine.tokenize_chat(spec.messages(problem.question))).token_ids


def test_generate_exact_tokens_stop_logprobs_seed(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    problem = _problems(1)[0]

    async def go() -> None:
        prompt = await _chat_prompt(vllm_engine, problem)
        spec = SamplingSpec(max_tokens=40, stop=("\n\n",), logprobs=3, seed=123)
        first = await vllm_engine.generate(GenerationRequest("g1", prompt, spec, n=4))
        again = await vllm_engine.generate(GenerationRequest("g2", prompt, spec, n=4))
        assert [c.text for c in first.completions] == [c.text for c in again.completions]
        for c in first.completions:
            # one step: the text (the decode of every token) holds the delimiter once, at its end
            assert c.text.rstrip("\n").count("\n\n") == 0 and "\n\n" in c.text
            assert c.ended_by_stop_string
            assert len(c.token_logprobs) == len(c.token_ids)
            assert all(len(top) == 3 for top in c.top_logprobs)
            assert all(top[0] >= top[1] >= top[2] for top in c.top_logprobs)
        # the repeated prompt hits the prefix cache (whole 32-token blocks)
        assert again.cached_prompt_tokens >= 32 * ((len(prompt) - 1) // 32)
        # a child extends its parent's exact tokens
        step = first.completions[0]
        child = await vllm_engine.generate(
            GenerationRequest("g3", prompt + step.token_ids, spec.model_copy(update={"seed": 1}))
        )
        assert child.prompt_tokens == len(prompt) + len(step.token_ids)

    engine_loop.run(go())


def test_a_stream_ends_with_what_generate_returns(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    """Chunks convert only their new tokens; the last one equals a one-shot request."""
    problem = _problems(1)[0]

    async def go() -> None:
        prompt = await _chat_prompt(vllm_engine, problem)
        spec = SamplingSpec(max_tokens=60, temperature=1.0, logprobs=5, seed=7)
        whole = (await vllm_engine.generate(GenerationRequest("w", prompt, spec))).completions[0]
        chunks = [
            r.completions[0] async for r in vllm_engine.stream(GenerationRequest("s", prompt, spec))
        ]
        assert len(chunks) > 5  # it really streamed
        for before, after in itertools.pairwise(chunks):
            assert after.token_ids[: len(before.token_ids)] == before.token_ids
            assert after.top_logprobs[: len(before.top_logprobs)] == before.top_logprobs
            assert after.text.startswith(before.text)
            assert len(before.token_logprobs) == len(before.token_ids)
        last = chunks[-1]
        assert last.token_ids == whole.token_ids and last.text == whole.text
        assert last.token_logprobs == whole.token_logprobs
        assert last.top_logprobs == whole.top_logprobs
        assert last.top_token_ids == whole.top_token_ids
        assert last.text == await vllm_engine.decode(last.token_ids)

    engine_loop.run(go())


def test_cancelling_aborts_the_request_in_vllm(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    async def go() -> float:
        prompt = await vllm_engine.tokenize("1")
        spec = SamplingSpec(max_tokens=200, temperature=1.0, seed=3)
        task = asyncio.create_task(
            vllm_engine.generate(GenerationRequest("long", prompt, spec, n=64))
        )
        await asyncio.sleep(0.3)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert vllm_engine.running_requests() == 0  # vLLM's own count: the request is gone
        return time.monotonic() - started

    assert engine_loop.run(go()) < 5


def test_self_consistency_and_best_of_n_end_to_end_in_process(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    problems = _problems(6)
    sc = _solve(engine_loop, _recipe({"name": "self_consistency", "n": 8}), vllm_engine, problems)
    bon = _solve(
        engine_loop,
        _recipe(
            {"name": "best_of_n", "n": 8, "scorer": "lp"},
            scorers=[{"kind": "mean_logprob", "name": "lp"}],
            sampling={"temperature": 1.0, "max_tokens": 96, "logprobs": 0},
        ),
        vllm_engine,
        problems,
    )
    for result in sc + bon:
        assert result.error is None, result.error
        assert result.graph is not None and len(result.graph) == 9
        assert result.usage["generated_tokens"] > 0
        assert result.answer is not None
    assert sum(bool(r.correct) for r in sc) >= 1


def test_openai_engine_matches_in_process_engine(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine, vllm_server: str
) -> None:
    problems = _problems(5)
    recipe = _recipe({"name": "self_consistency", "n": 6})
    local = _solve(engine_loop, recipe, vllm_engine, problems)
    remote_engine = OpenAIEngine(OpenAIEngineConfig(base_urls=[vllm_server], model="policy"))

    async def remote() -> list[ProblemResult]:
        async with remote_engine, Orchestrator(recipe, engine=remote_engine) as orchestrator:
            return await orchestrator.run(problems)

    served = engine_loop.run(remote())
    for a, b in zip(local, served, strict=True):
        assert b.error is None, b.error
        assert a.answer == b.answer
        assert a.graph is not None and b.graph is not None
        texts_a = [n.text for n in a.graph.nodes()]
        texts_b = [n.text for n in b.graph.nodes()]
        assert texts_a == texts_b
        assert a.usage["generated_tokens"] == b.usage["generated_tokens"]


def test_stop_tokens_change_no_completion(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine, vllm_server: str
) -> None:
    """Stopping on the tokens that hold the step delimiter: the same completions as stopping on
    the string alone, in process and served (orchestrator/engines/stop_tokens.py)."""
    problems = _problems(3)

    def seen(result: GenerationResult) -> list[tuple[object, ...]]:
        return [
            (c.token_ids, c.text, c.finish_reason, c.stop_reason, c.ended_by_stop_string)
            for c in result.completions
        ]

    async def in_process(request: GenerationRequest, stop_tokens: bool) -> GenerationResult:
        config = vllm_engine.config
        vllm_engine.config = config.model_copy(update={"stop_tokens": stop_tokens})
        try:
            sent = await vllm_engine.prepare_stop_tokens(request.sampling.stop)
            assert bool(sent.held) == stop_tokens  # what generate sends along
            return await vllm_engine.generate(request)
        finally:
            vllm_engine.config = config

    async def served(request: GenerationRequest, stop_tokens: bool) -> GenerationResult:
        config = OpenAIEngineConfig(
            base_urls=[vllm_server], model="policy", stop_tokens=stop_tokens
        )
        async with OpenAIEngine(config) as engine:
            sent = await engine.prepare_stop_tokens(request.sampling.stop)
            assert bool(sent.held) == stop_tokens  # the served folder's tokenizer was found
            return await engine.generate(request)

    async def go() -> int:
        ended = 0
        for index, problem in enumerate(problems):
            prompt = await _chat_prompt(vllm_engine, problem)
            spec = SamplingSpec(max_tokens=48, temperature=1.0, stop=("\n\n",), seed=index)
            request = GenerationRequest(f"stop-{index}", prompt, spec, n=16)
            results = [
                await run(replace(request, request_id=f"{request.request_id}-{i}"), on)
                for i, (run, on) in enumerate(
                    itertools.product((in_process, served), (True, False))
                )
            ]
            assert all(seen(r) == seen(results[0]) for r in results[1:])
            ended += sum(c.ended_by_stop_string for c in results[0].completions)
        return ended

    assert engine_loop.run(go()) > 30  # most samples ended a step

"""The streaming API: port.stream (partials, aborts, accounting) and port.extend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from branchwise.core.errors import BudgetExhausted
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.types import GenerationRequest, GenerationResult, SamplingSpec
from branchwise.orchestrator.ledger import Budget
from tests.conftest import make_problem
from tests.unit.sampling_support import make_context


def test_scripted_stream_yields_one_token_per_step_and_counts_what_it_yields() -> None:
    engine = ScriptedEngine(error_rate=0.0)
    problem = make_problem(0)
    engine.learn({problem.question: problem.solution or ""})

    async def go() -> list[GenerationResult]:
        ids = await engine.tokenize(problem.question + "\n")
        request = GenerationRequest("s", ids, SamplingSpec(max_tokens=64, logprobs=3))
        return [r async for r in engine.stream(request)]

    results = asyncio.run(go())
    lengths = [len(r.completions[0].token_ids) for r in results]
    assert lengths == list(range(1, len(results) + 1))
    assert [r.completions[0].finish_reason for r in results[:-1]] == ["abort"] * (len(results) - 1)
    final = results[-1].completions[0]
    assert final.finish_reason == "stop" and final.text.endswith(f"Answer: {problem.reference}")
    assert len(final.top_token_ids) == len(final.token_ids)
    assert all(ids[0] == tok for ids, tok in zip(final.top_token_ids, final.token_ids, strict=True))
    assert engine.generated_tokens == len(final.token_ids)
    assert engine.aborted == []


async def _leave_after_five_tokens(engine: ScriptedEngine) -> Any:
    """Stream a whole solution and walk away once it has 5 tokens: the context, the stream
    and the texts streamed."""
    ctx = await make_context(engine, make_problem(1))
    texts = []
    async with ctx.stream(ctx.root, one_step=False) as stream:
        async for partial in stream:
            texts.append(partial.text)
            if len(partial.token_ids) == 5:
                break
    return ctx, stream, texts


def test_leaving_a_stream_early_records_an_aborted_node_with_its_tokens() -> None:
    engine = ScriptedEngine(error_rate=0.0)
    ctx, stream, _ = asyncio.run(_leave_after_five_tokens(engine))
    node = stream.node
    assert stream.aborted and node is not None
    assert len(node.token_ids) == 5 and node.finish_reason == "abort" and not node.terminal
    assert ctx.graph.state(node.id).status == "aborted"
    assert ctx.budget.usage.generated_tokens == 5 == engine.generated_tokens
    assert ctx.budget.usage.aborted_requests == 1
    assert engine.aborted == [stream.request_id]
    assert ctx.budget.generated_tokens_left() is None


class RunningTextEngine(ScriptedEngine):
    """Streams a running text that is not the decode of its tokens (as vLLM's can lack a
    trailing incomplete character), to show which text a stopped sample keeps."""

    async def stream(self, request: GenerationRequest) -> Any:
        async for result in super().stream(request):
            c = result.completions[0]
            running = c if c.finish_reason != "abort" else replace(c, text="<running>")
            yield replace(result, completions=(running,))


def test_a_sample_stopped_mid_stream_keeps_the_decode_of_its_tokens() -> None:
    engine = RunningTextEngine(error_rate=0.0)

    async def go() -> Any:
        _, stream, texts = await _leave_after_five_tokens(engine)
        return stream.node, texts, await engine.decode(stream.node.token_ids)

    node, texts, decoded = asyncio.run(go())
    assert texts == ["<running>"] * 5  # what the engine streamed
    assert node.finish_reason == "abort" and len(node.token_ids) == 5
    assert node.text == decoded != "<running>"


def test_a_finished_stream_is_recorded_like_expand() -> None:
    engine = ScriptedEngine(error_rate=0.0)
    problem = make_problem(2)

    async def go() -> Any:
        ctx = await make_context(engine, problem)
        async with ctx.stream(ctx.root, one_step=True) as stream:
            async for _ in stream:
                pass
        return ctx, stream

    ctx, stream = asyncio.run(go())
    node = stream.node
    assert node is not None and not stream.aborted
    assert node.text.endswith("\n") and not node.terminal  # one step, ended by the delimiter
    assert ctx.graph.state(node.id).status == "open"
    assert ctx.budget.usage.generated_tokens == len(node.token_ids) == engine.generated_tokens


def test_cancelling_a_streaming_task_aborts_the_request_and_keeps_its_partial_tokens() -> None:
    engine = ScriptedEngine(error_rate=0.0, seconds_per_token=0.002)

    async def go() -> Any:
        ctx = await make_context(engine, make_problem(3))
        stream = ctx.stream(ctx.root, one_step=False)

        async def drain() -> None:
            async with stream:
                async for _ in stream:
                    pass

        task = asyncio.create_task(drain())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        before = engine.generated_tokens
        await asyncio.sleep(0.03)
        return ctx, stream, before

    ctx, stream, before = asyncio.run(go())
    node = stream.node
    assert node is not None and stream.aborted
    assert 0 < len(node.token_ids) < 30
    assert engine.generated_tokens == before == len(node.token_ids)
    assert ctx.budget.usage.generated_tokens == len(node.token_ids)
    assert engine.aborted == [stream.request_id]


def test_time_budget_stops_a_stream_and_still_records_it() -> None:
    engine = ScriptedEngine(error_rate=0.0, seconds_per_token=0.01)

    async def go() -> Any:
        ctx = await make_context(engine, make_problem(4), budget=Budget(max_seconds=0.05))
        stream = ctx.stream(ctx.root, one_step=False)
        with pytest.raises(BudgetExhausted):
            async with stream:
                async for _ in stream:
                    pass
        return ctx, stream

    ctx, stream = asyncio.run(go())
    assert stream.aborted and stream.node is not None
    assert (
        ctx.budget.usage.generated_tokens == len(stream.node.token_ids) == engine.generated_tokens
    )


def test_the_token_budget_caps_a_stream_and_rejects_one_it_cannot_pay() -> None:
    engine = ScriptedEngine(error_rate=0.0)

    async def go() -> Any:
        ctx = await make_context(engine, make_problem(5), budget=Budget(max_generated_tokens=7))
        async with ctx.stream(ctx.root, one_step=False) as first:
            async for _ in first:
                pass
        with pytest.raises(BudgetExhausted):
            async with ctx.stream(ctx.root, one_step=False):
                pass
        return ctx, first

    ctx, first = asyncio.run(go())
    assert first.node is not None and len(first.node.token_ids) == 7
    assert first.node.finish_reason == "length"
    assert ctx.budget.usage.generated_tokens == 7


class _NoStreamEngine:
    """Only generate(): stream must still work, with one final partial."""

    def __init__(self) -> None:
        self.inner = ScriptedEngine(error_rate=0.0)
        self.name = "nostream"
        self.generate = self.inner.generate
        self.tokenize = self.inner.tokenize
        self.learn = self.inner.learn

    async def __aenter__(self) -> _NoStreamEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_engines_without_streaming_yield_one_final_partial() -> None:
    engine = _NoStreamEngine()

    async def go() -> Any:
        ctx = await make_context(engine, make_problem(6))  # type: ignore[arg-type]
        partials = []
        async with ctx.stream(ctx.root, one_step=False) as stream:
            async for partial in stream:
                partials.append(partial)
        return partials, stream

    partials, stream = asyncio.run(go())
    assert len(partials) == 1 and partials[0].finish_reason == "stop"
    assert stream.node is not None and stream.node.terminal


class _EosEngine(ScriptedEngine):
    eos_token_id = ord("#") + 3


def test_extend_adds_forced_tokens_that_cost_nothing_and_prompt_the_next_request() -> None:
    engine = _EosEngine(error_rate=0.0)
    problem = make_problem(7)

    async def go() -> Any:
        ctx = await make_context(engine, problem)
        forced = await ctx.extend(ctx.root, await engine.tokenize("12"))
        children = await ctx.expand(forced, 1, one_step=True)
        ended = await ctx.extend(forced, (engine.eos_token_id,))
        return ctx, forced, children[0], ended

    ctx, forced, child, ended = asyncio.run(go())
    assert forced.forced and forced.text == "12" and forced.generated_tokens == 0
    assert ctx.graph.full_token_ids(child.id)[: -len(child.token_ids)] == (
        ctx.root.token_ids + forced.token_ids
    )
    assert engine.requests[-1].prompt_token_ids == ctx.root.token_ids + forced.token_ids
    assert ctx.budget.usage.generated_tokens == len(child.token_ids)
    assert ended.terminal and ended.finish_reason == "stop" and ended.text == "#"
    assert ctx.graph.state(ended.id).status == "terminal"


def test_streams_in_flight_hold_their_node_so_the_node_budget_cannot_overshoot() -> None:
    engine = ScriptedEngine(error_rate=0.0)

    async def go() -> Any:
        ctx = await make_context(engine, make_problem(8), budget=Budget(max_nodes=2))
        async with ctx.stream(ctx.root, one_step=False) as first:
            async with ctx.stream(ctx.root, one_step=False) as second:
                with pytest.raises(BudgetExhausted):
                    await ctx.extend(ctx.root, (70,))
                with pytest.raises(BudgetExhausted):
                    async with ctx.stream(ctx.root, one_step=False):
                        pass
                async for _ in second:
                    pass
            async for _ in first:
                pass
        return ctx

    ctx = asyncio.run(go())
    assert len(ctx.graph) == 3 and ctx.budget.usage.nodes == 2


def test_first_finish_starts_only_the_samples_the_node_budget_allows() -> None:
    from tests.unit.sampling_support import run_strategy

    [result] = run_strategy(
        {"name": "first_finish", "n": 6},
        [make_problem(0)],
        ScriptedEngine(error_rate=0.0),
        budget={"max_nodes": 3},
    )
    assert result.error is None and result.graph is not None
    assert len(result.graph.children("r")) == 3 and result.answer is not None

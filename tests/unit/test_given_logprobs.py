"""port.logprobs_of: exact on the scripted engine, paid as prompt tokens, no node; the
strategies that need it are served like any other."""

from __future__ import annotations

import asyncio
import math

import pytest

from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.scripted_thinking import ThinkingPolicy
from branchwise.orchestrator.engines.types import LogprobRequest
from tests.conftest import make_problem
from tests.unit.sampling_support import make_context
from tests.unit.test_server import chat, recipe_data, run, served


def test_scored_tokens_are_the_policy_log_probabilities_and_cost_a_prefill() -> None:
    problem = make_problem(0)
    engine = ScriptedEngine(error_rate=0.3)

    async def go() -> None:
        ctx = await make_context(engine, problem)
        reference = str(problem.solution)
        ids = await engine.tokenize(reference)
        scored = await ctx.logprobs_of(ctx.root, ids)
        # each line's number may go wrong (p 0.3 / 9 per offset); the rest is certain
        assert sum(scored) == pytest.approx(len(reference.split("\n")) * math.log(0.7))
        head, result = reference.split("\n")[0].split("=")
        wrong = await engine.tokenize(f"{head}={int(result) + 1}\n")
        off = await ctx.logprobs_of(ctx.root, wrong)
        assert sum(off) == pytest.approx(math.log(0.3 / 9))
        assert len(ctx.graph) == 1  # no node
        usage = ctx.ledger.usage
        assert usage.generated_tokens == 0 and usage.engine_calls == 2
        prompt = len(ctx.graph.full_token_ids(ctx.root.id))
        assert usage.prompt_tokens == 2 * prompt + len(ids) + len(wrong)

    asyncio.run(go())


def test_a_policy_without_a_token_distribution_cannot_score() -> None:
    engine = ScriptedEngine()
    engine.think()
    assert isinstance(engine.policy, ThinkingPolicy)
    with pytest.raises(EngineError, match="no token-level distribution"):
        asyncio.run(engine.logprobs_of(LogprobRequest("x", (70, 71), (72,))))


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "power_sampling", "blocks": 2, "mcmc_steps": 2},
        {"name": "speculative_consensus", "n": 4, "chunk_tokens": 8},
    ],
)
def test_the_server_runs_them(strategy: dict[str, object]) -> None:
    async def go() -> None:
        async with served(recipe_data(strategy=strategy)) as s:
            response = await s.client.post("/v1/chat/completions", json=chat())
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["branchwise"]["answer"] is not None
            assert s.engine.requests_scored  # the search asked for given tokens' logprobs

    run(go)

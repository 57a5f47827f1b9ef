"""RSD: the draft writes each step, the PRM keeps it or the target rewrites it; usage is
counted per engine, and recipes with several engines are checked in one line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from branchwise.core.errors import RecipeError
from branchwise.core.problem import Problem
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, teach
from tests.unit.step_helpers import ORACLES, accuracy
from tests.unit.test_server import PROBLEMS as SERVED
from tests.unit.test_server import chat, recipe_data, served

TARGET = {"kind": "scripted", "error_rate": 0.0}


def _recipe(strategy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "engine": {"kind": "scripted"},
        "engines": {"target": TARGET},
        "strategy": strategy,
        "scorers": ORACLES,
        "sampling": {"temperature": 1.0, "max_tokens": 160},
        **extra,
    }


def _rsd(**extra: Any) -> dict[str, Any]:
    return {"name": "rsd", "target_engine": "target", "scorer": "prm", **extra}


def _run(
    strategy: dict[str, Any], problems: list[Problem], *, draft_error: float = 0.3
) -> list[ProblemResult]:
    """A weak draft (the recipe's engine) and an error-free target, both knowing the
    problems; the oracle PRM scores steps."""
    recipe = parse_recipe(_recipe(strategy))
    draft = ScriptedEngine(error_rate=draft_error)
    target = ScriptedEngine(error_rate=0.0)
    teach(draft, problems)
    teach(target, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=draft, engines={"target": target}) as orch:
            return await orch.run(problems)

    return asyncio.run(go())


def _total(results: list[ProblemResult], key: str) -> int:
    return sum(int(r.usage[key]) for r in results)


PROBLEMS = [make_problem(i, steps=5) for i in range(30)]


def test_rsd_reaches_target_accuracy_with_most_steps_written_by_the_draft() -> None:
    results = _run(_rsd(threshold=0.5), PROBLEMS)
    draft_only = _run({"name": "self_consistency", "n": 1}, PROBLEMS)
    assert all(r.error is None for r in results)
    # every wrong draft step was caught by the PRM and rewritten by the error-free target
    assert accuracy(results) == 1.0
    assert accuracy(draft_only) < 0.4  # about 0.7 ** 6 of paths survive six draft steps
    drafted = sum(r.detail["draft_steps"] for r in results)
    rewritten = sum(r.detail["target_steps"] for r in results)
    assert drafted > 1.5 * rewritten  # most steps are the draft's
    # the target was called exactly once per rewritten step, the draft once per step
    assert _total(results, "engines.target.engine_calls") == rewritten
    assert _total(results, "engines.default.engine_calls") == drafted + rewritten
    for r in results:
        by_engine = sum(
            int(r.usage[f"engines.{e}.generated_tokens"]) for e in ("default", "target")
        )
        assert by_engine == r.usage["generated_tokens"]
        graph = r.graph
        assert graph is not None and r.node_id is not None
        # every rejected draft step stays in the trace, pruned, beside the target's rewrite
        pruned = [n for n in graph.nodes() if graph.state(n.id).status == "pruned"]
        assert len(pruned) == r.detail["target_steps"]
        assert all(graph.score(n.id, "prm") is not None for n in pruned)


def test_threshold_zero_keeps_every_draft_step_and_never_calls_the_target() -> None:
    kept_all = _run(_rsd(threshold=0.0), PROBLEMS)
    assert _total(kept_all, "engines.target.engine_calls") == 0
    assert accuracy(kept_all) < 0.4  # the draft alone


def test_a_perfect_draft_is_never_rewritten() -> None:
    results = _run(_rsd(threshold=0.5), PROBLEMS[:8], draft_error=0.0)
    assert accuracy(results) == 1.0
    assert _total(results, "engines.target.engine_calls") == 0
    assert all(r.detail["draft_share"] == 1.0 for r in results)


def test_recipe_engine_names_are_checked_in_one_line() -> None:
    with pytest.raises(RecipeError, match=r"strategy.target_engine: 'big' is not one of"):
        parse_recipe(_recipe(_rsd(target_engine="big")))
    with pytest.raises(RecipeError, match=r"engines.default: reserved"):
        parse_recipe(_recipe(_rsd(), engines={"default": TARGET}))
    with pytest.raises(RecipeError, match=r"engines.target.kind: .*did you mean"):
        parse_recipe(_recipe(_rsd(), engines={"target": {"kind": "scriptd"}}))
    with pytest.raises(RecipeError, match=r"engines.target.error_rate"):
        parse_recipe(_recipe(_rsd(), engines={"target": {"kind": "scripted", "error_rate": 2}}))
    without = _recipe(_rsd())
    del without["engines"]
    with pytest.raises(RecipeError, match=r"engines: none"):
        parse_recipe(without)


def test_single_engine_recipes_keep_their_fingerprint_and_usage_record() -> None:
    plain = {**_recipe({"name": "self_consistency", "n": 2})}
    del plain["engines"]
    with_empty = {**plain, "engines": {}}
    assert parse_recipe(plain).fingerprint() == parse_recipe(with_empty).fingerprint()
    assert (
        parse_recipe(plain).fingerprint() != parse_recipe(_recipe(plain["strategy"])).fingerprint()
    )
    recipe = parse_recipe(plain)
    engine = ScriptedEngine()
    teach(engine, PROBLEMS[:2])

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orch:
            return await orch.run(PROBLEMS[:2])

    assert not any(k.startswith("engines.") for r in asyncio.run(go()) for k in r.usage)


class _OtherVocabulary(ScriptedEngine):
    async def tokenize(self, text: str) -> tuple[int, ...]:
        return tuple(ord(ch) + 7 for ch in text)


def test_a_named_engine_with_another_tokenizer_is_refused_at_start() -> None:
    recipe = parse_recipe(_recipe(_rsd()))

    async def go() -> None:
        other = {"target": _OtherVocabulary()}
        async with Orchestrator(recipe, engine=ScriptedEngine(), engines=other):
            pass

    with pytest.raises(RecipeError, match=r"engines.target: tokenizes text differently"):
        asyncio.run(go())


def test_the_server_reports_usage_per_engine_and_shares_the_named_engines() -> None:
    data = recipe_data(
        engine={"kind": "scripted", "error_rate": 0.9},  # a draft the PRM mostly rejects
        engines={"target": TARGET},
        strategy=_rsd(threshold=0.5),
        scorers=[{"kind": "reference_steps", "name": "prm"}],
    )

    async def go() -> None:
        async with served(data) as s:
            target = s.server.catalog.models["sc"].orchestrator.engines["target"]
            assert isinstance(target, ScriptedEngine)
            teach(target, SERVED)
            target_calls = 0
            for _ in range(2):  # each request's orchestrator uses the model's engines
                body = (await s.client.post("/v1/chat/completions", json=chat())).json()
                mine = body["branchwise"]["usage"]
                split = sum(mine[f"engines.{e}.generated_tokens"] for e in ("default", "target"))
                assert split == mine["generated_tokens"] == body["usage"]["completion_tokens"]
                assert mine["engines.target.engine_calls"] >= 1
                target_calls += mine["engines.target.engine_calls"]
            assert len(target.requests) == target_calls  # one target engine, shared

    asyncio.run(asyncio.wait_for(go(), 30))

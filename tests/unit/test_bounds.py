"""Bounds that keep memory in check (issue 24): counts at validation, prompt length at the
server, the scripted engine's prefix cache linear in prompt length."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.cli import main
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.recipe_bounds import MAX_COUNT
from branchwise.orchestrator.server.settings import ServerLimits
from tests.unit.test_server import chat, run, served


def _recipe(strategy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    if strategy["name"] in ("beam_search", "best_of_n"):
        strategy = {**strategy, "scorer": "steps"}
        extra["scorers"] = [{"kind": "reference_steps", "name": "steps"}]
    return {"engine": {"kind": "scripted"}, "strategy": strategy, **extra}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_recipe({"name": "self_consistency", "n": 10**20}), "strategy.n: 100000000000000000000"),
        (_recipe({"name": "self_consistency", "n": 1_000_000}), "more than 65,536"),
        (
            _recipe({"name": "beam_search", "beam_width": 512, "expansions": 512}),
            "beam_width 512 x expansions 512 = 262,144 samples side by side",
        ),
        (
            _recipe(
                {"name": "best_of_n", "n": 64},
                budget={"max_generated_tokens": 32},
                sampling={"max_tokens": 16},
            ),
            "strategy.n: 64 samples at once cannot fit budget.max_generated_tokens 32",
        ),
        (
            _recipe({"name": "self_consistency"}, sampling={"max_tokens": 10**12}),
            "sampling.max_tokens: 1000000000000 is more than",
        ),
    ],
)
def test_counts_that_cannot_fit_are_refused_with_the_numbers(
    data: dict[str, Any], words: str
) -> None:
    with pytest.raises(RecipeError, match=words.replace("(", r"\(")):
        parse_recipe(data)


def test_validate_refuses_a_huge_n_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "engine: {kind: scripted}\nstrategy: {name: self_consistency, n: 100000000000000000000}\n"
    )
    assert main(["validate", str(recipe), "--static"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "strategy.n" in err and "65,536" in err


def test_counts_within_the_bounds_pass() -> None:
    parse_recipe(_recipe({"name": "self_consistency", "n": MAX_COUNT}))
    parse_recipe(_recipe({"name": "beam_search", "beam_width": 4, "expansions": 4}))
    parse_recipe(
        _recipe({"name": "self_consistency", "n": 16}, budget={"max_generated_tokens": 16})
    )


def test_the_server_caps_prompt_length_in_tokens_naming_the_field() -> None:
    async def go() -> None:
        async with served(limits=ServerLimits(max_prompt_tokens=500)) as s:
            response = await s.client.post("/v1/chat/completions", json=chat("x" * 2000))
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["param"] == "messages" and error["code"] == "prompt_too_long"
            assert "limit of 500" in error["message"]
            body = {"model": "sc", "prompt": "y" * 2000}
            response = await s.client.post("/v1/completions", json=body)
            assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
            assert s.server.stats.started == 0
            assert (await s.client.post("/v1/chat/completions", json=chat())).status_code == 200

    run(go)


def _peak_bytes(prompt_tokens: int) -> int:
    engine = ScriptedEngine()
    ids = tuple(ord("a") + i % 26 for i in range(prompt_tokens))
    spec = SamplingSpec(max_tokens=4, seed=0)

    async def go() -> None:
        await engine.generate(GenerationRequest("r", ids, spec))
        await engine.generate(GenerationRequest("r2", ids, spec))  # a cache hit

    tracemalloc.start()
    try:
        asyncio.run(go())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_scripted_prefix_cache_grows_linearly_with_prompt_length() -> None:
    small, large = _peak_bytes(50_000), _peak_bytes(400_000)
    # 8x the prompt: about 8x the memory (the old cache of whole prefixes took 64x; 1 MB of
    # prompt took 24 GB)
    assert large < 12 * small, (small, large)
    assert large < 200_000_000

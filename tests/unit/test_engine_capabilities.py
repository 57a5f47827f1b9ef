"""Engine capabilities are declared: token-level strategies need a TokenEngine, checked early."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.engines.base import LogprobEngine, TokenEngine
from branchwise.orchestrator.engines.config import ENGINES, OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.prompting import ChatMessage
from branchwise.orchestrator.recipe import load_recipe, parse_recipe
from branchwise.orchestrator.runner import Orchestrator
from branchwise.strategies.base import STRATEGIES
from tests.conftest import REPO

ENTROPY = {"name": "entropy_branching", "entropy_threshold": 0.5}


def test_a_token_level_strategy_on_an_engine_that_cannot_decode_fails_validation() -> None:
    openai = {"kind": "openai", "base_urls": ["http://localhost:1"], "model": "m"}
    with pytest.raises(RecipeError, match=r"entropy_branching forces tokens.*'openai' cannot"):
        parse_recipe({"engine": openai, "strategy": ENTROPY})
    parse_recipe({"engine": {"kind": "scripted"}, "strategy": ENTROPY})  # it can
    parse_recipe({"engine": openai, "strategy": {"name": "self_consistency"}})  # no need


def test_a_passed_in_engine_that_cannot_decode_is_refused_before_the_run() -> None:
    recipe = parse_recipe({"engine": {"kind": "scripted"}, "strategy": ENTROPY})
    fleet = OpenAIEngine(OpenAIEngineConfig(base_urls=["http://localhost:1"], model="m"))
    with pytest.raises(RecipeError, match="needs a TokenEngine"):
        Orchestrator(recipe, engine=fleet)


def test_declared_token_level_engines_are_token_engines() -> None:
    assert isinstance(ScriptedEngine(), TokenEngine)
    for name, config in ENGINES:
        built = {"vllm": VLLMEngine, "openai": OpenAIEngine, "scripted": ScriptedEngine}[name]
        has = all(hasattr(built, attr) for attr in ("decode", "eos_token_id"))
        assert config.token_level == has, name
    assert [n for n, s in STRATEGIES if s.needs_token_engine] == [
        "budget_forcing",
        "entropy_branching",
        "power_sampling",
        "speculative_consensus",
    ]


@pytest.mark.parametrize("strategy", ["power_sampling", "speculative_consensus"])
def test_a_strategy_scoring_given_tokens_names_the_engines_that_can(strategy: str) -> None:
    openai = {"kind": "openai", "base_urls": ["http://localhost:1"], "model": "m"}
    with pytest.raises(RecipeError) as refused:
        parse_recipe({"engine": openai, "strategy": {"name": strategy}})
    message = str(refused.value)
    assert "\n" not in message.strip()
    assert f"{strategy} needs the log-probabilities of given tokens" in message
    assert "engines that can: scripted, vllm" in message
    parse_recipe({"engine": {"kind": "scripted"}, "strategy": {"name": strategy}})


def test_declared_engines_score_given_tokens() -> None:
    for name, config in ENGINES:
        built = {"vllm": VLLMEngine, "openai": OpenAIEngine, "scripted": ScriptedEngine}[name]
        assert config.given_logprobs == hasattr(built, "logprobs_of"), name
    assert isinstance(ScriptedEngine(), LogprobEngine)


def test_a_passed_in_engine_that_cannot_score_given_tokens_is_refused() -> None:
    recipe = parse_recipe({"engine": {"kind": "scripted"}, "strategy": {"name": "power_sampling"}})
    fleet = OpenAIEngine(OpenAIEngineConfig(base_urls=["http://localhost:1"], model="m"))
    with pytest.raises(RecipeError, match="power_sampling needs the log-probabilities"):
        Orchestrator(recipe, engine=fleet)


def test_a_scripted_recipe_names_the_solutions_its_engine_replays() -> None:
    recipe = load_recipe(REPO / "examples" / "recipes" / "best_of_n_oracle_scripted.yaml")
    engine = recipe.engine.build(recipe.base_dir)
    assert isinstance(engine, ScriptedEngine)
    question = "Zed has 36 cards. He loses 20. He buys 44 more. How many cards now?"

    async def first_line() -> str:
        ids = (await engine.tokenize_chat([ChatMessage("user", question)])).token_ids
        from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec

        spec = SamplingSpec(max_tokens=20, stop=("\n\n",), seed=0)
        result = await engine.generate(GenerationRequest("t", ids, spec))
        return result.completions[0].text

    assert asyncio.run(first_line()).startswith("36 - 20 = ")


def test_solutions_do_not_change_the_recipe_fingerprint(tmp_path: Path) -> None:
    base = {"engine": {"kind": "scripted"}, "strategy": {"name": "self_consistency"}}
    with_file = {**base, "engine": {"kind": "scripted", "solutions": "x.jsonl"}}
    assert parse_recipe(base).fingerprint() == parse_recipe(with_file).fingerprint()

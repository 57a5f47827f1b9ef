"""The recipes for real checkpoints validate here, without their weights (``--static``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchwise.orchestrator.cli import main
from branchwise.orchestrator.recipe import load_recipe

REAL = sorted(
    (Path(__file__).resolve().parents[2] / "examples" / "recipes" / "real").glob("*.yaml")
)


def test_there_are_recipes_for_qwen_math_and_llama() -> None:
    names = {p.stem for p in REAL}
    assert {"qwen_math_best_of_n", "qwen_math_beam_search", "qwen_math_particle_filter"} <= names
    assert any("llama" in n for n in names)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_real_recipe_validates_without_weights(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(path), "--static"]) == 0
    assert ": ok " in capsys.readouterr().out
    recipe = load_recipe(path)
    assert recipe.prompt.style == "chat"
    assert recipe.step_delimiter == "\n\n" and recipe.answer.method == "boxed"


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_full_validate_says_the_hub_models_are_not_here(
    path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nor a model in the Hugging Face cache" in err and "--static" in err
    assert len(err.strip().splitlines()) == 1


def test_a_reasoning_model_recipe_has_its_format_and_a_thinking_budget() -> None:
    reasoning = [load_recipe(p) for p in REAL if "qwen3" in p.stem]
    assert len(reasoning) >= 2
    for recipe in reasoning:
        assert recipe.reasoning is not None and recipe.reasoning.end == "</think>"
        cap = recipe.budget.max_thinking_tokens
        strategy_cap = getattr(recipe.strategy, "max_thinking_tokens", None)
        assert (cap or strategy_cap or 0) > 0

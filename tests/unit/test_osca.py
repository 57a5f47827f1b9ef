"""OSCA: a mix of sampling configurations, fitted on some problems, beats the best single one."""

from __future__ import annotations

import asyncio
import random
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.cli import main
from branchwise.orchestrator.engines.scripted import EOS, Continuation
from branchwise.orchestrator.osca_fit import (
    collect_outcomes,
    evaluate_allocation,
    fit_allocation,
    fragment,
)
from branchwise.orchestrator.recipe import parse_recipe
from tests.conftest import make_problem
from tests.readme import REPO
from tests.unit.sampling_support import LearningEngine, run_strategy

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "plain": {"temperature": 0.7},
    "hint_x": {"question": "Hint X"},
    "hint_y": {"question": "Hint Y"},
}


class SplitPolicy:
    """Problems come in two kinds (by the question's hash): a kind-X problem is solved 70 % of
    the time under the "Hint X" prompt, and otherwise gets one fixed wrong answer 60 % of the
    time; kind Y the same with "Hint Y". The plain prompt solves either kind 30 % of the time
    and spreads its mistakes. So no single configuration solves both kinds; a mix does."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}
        self.prompts: list[str] = []

    def learn(self, solutions: dict[str, str]) -> None:
        for question, solution in solutions.items():
            self.answers[question] = int(solution.rsplit("Answer: ", 1)[1])

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        self.prompts.append(prompt)
        question = next(q for q in self.answers if q in prompt)
        right = self.answers[question]
        kind = "XY"[zlib.crc32(question.encode()) % 2]
        if f"Hint {kind}" in prompt:
            answer = right if rng.random() < 0.7 else right + rng.randint(1, 5)
        elif "Hint" in prompt:
            roll = rng.random()
            answer = right + 100 if roll < 0.6 else right if roll < 0.8 else right + 7
        else:
            answer = right if rng.random() < 0.3 else right + rng.randint(1, 9)
        body = f"Answer: {answer}" + EOS
        return Continuation(body, (-0.1,) * len(body))


TRAIN = [make_problem(i) for i in range(30)]
HELD_OUT = [make_problem(i) for i in range(100, 140)]


def osca(allocation: dict[str, int]) -> dict[str, Any]:
    return {"name": "osca", "configurations": CONFIGURATIONS, "allocation": allocation}


def accuracy(allocation: dict[str, int]) -> float:
    results = run_strategy(osca(allocation), HELD_OUT, LearningEngine(SplitPolicy()))
    assert all(r.error is None for r in results)
    return sum(bool(r.correct) for r in results) / len(results)


def test_samples_follow_the_allocation_and_carry_their_configuration() -> None:
    policy = SplitPolicy()
    [result] = run_strategy(osca({"plain": 2, "hint_y": 3}), TRAIN[:1], LearningEngine(policy))
    assert result.graph is not None
    labels = sorted(str(n.prompt_variant) for n in result.graph.children("r"))
    assert labels == ["hint_y"] * 3 + ["plain"] * 2
    assert sum("Hint Y" in p for p in policy.prompts) == 3
    assert not any("Hint X" in p for p in policy.prompts)
    assert result.detail["by_configuration"] == {"hint_y": 3, "plain": 2}


def test_the_mix_fitted_on_other_problems_beats_the_best_single_configuration() -> None:
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": osca({"plain": 1}),
            "sampling": {"max_tokens": 32},
        }
    )
    engine = LearningEngine(SplitPolicy())
    engine.learn({p.question: p.solution or "" for p in TRAIN})
    outcomes, tokens = asyncio.run(collect_outcomes(recipe, TRAIN, 12, engine=engine))
    assert set(tokens) == set(CONFIGURATIONS)
    assert all(len(outcomes[p.id][name]) == 12 for p in TRAIN for name in CONFIGURATIONS)
    fit = fit_allocation(outcomes, 8, objective="vote")
    assert fit.search == "exact" and fit.splits_evaluated == 45  # every split of 8 in 3
    assert fit.allocation.get("hint_x", 0) >= 2 and fit.allocation.get("hint_y", 0) >= 2
    assert fit.value > fit.best_single_value + 0.1
    # the same comparison, measured: the learned mix against the best single configuration
    # with the same 8 samples on 40 problems the fit never saw
    learned = accuracy(fit.allocation)
    single = accuracy({fit.best_single: 8})
    assert learned >= single + 0.25, (learned, single)
    assert fragment(recipe, fit)["strategy"]["allocation"] == fit.allocation


def test_coverage_is_exact_and_hill_climbing_finds_the_exact_optimum() -> None:
    outcomes = {
        "a": {"one": [("1", True), ("2", False)], "two": [("3", False), ("3", False)]},
        "b": {"one": [("2", False), ("2", False)], "two": [("5", True), ("5", True)]},
    }
    # problem a: 1 - 0.5^2; problem b: 0 with two samples of "one"
    assert evaluate_allocation(outcomes, {"one": 2}, objective="coverage") == 0.375
    exact = fit_allocation(outcomes, 6, objective="coverage")
    climbed = fit_allocation(outcomes, 6, objective="coverage", exact_limit=0)
    assert (exact.search, climbed.search) == ("exact", "hill_climbing")
    assert climbed.allocation == exact.allocation == {"one": 5, "two": 1}
    assert climbed.splits_evaluated < 20


def test_bad_allocations_are_refused_in_one_line() -> None:
    with pytest.raises(RecipeError, match=r"allocation: \['cold'\] are not in configurations"):
        parse_recipe({"engine": {"kind": "scripted"}, "strategy": osca({"cold": 2})})
    with pytest.raises(RecipeError, match="allocates no samples"):
        parse_recipe({"engine": {"kind": "scripted"}, "strategy": osca({"plain": 0})})
    with pytest.raises(RecipeError, match="needs `scorer`"):
        parse_recipe(
            {
                "engine": {"kind": "scripted"},
                "strategy": {**osca({"plain": 1}), "selection": "best"},
            }
        )


def test_allocate_command_writes_a_fragment_the_recipe_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = REPO / "examples/testbed/data/val.jsonl"
    data = yaml.safe_load((REPO / "examples/recipes/osca.yaml").read_text())
    data["engine"] = {"kind": "scripted", "error_rate": 0.3, "solutions": str(val)}
    data["sampling"]["max_tokens"] = 200  # one token per character on the scripted engine
    data["dataset"] = {"path": str(val), "limit": 6}
    recipe = tmp_path / "osca.yaml"
    recipe.write_text(yaml.safe_dump(data))
    out = tmp_path / "fit.yaml"
    argv = ["allocate", str(recipe), "--out", str(out), "--samples", "3", "--budget", "5"]
    assert main(argv) == 0
    assert "allocation" in capsys.readouterr().out
    written = yaml.safe_load(out.read_text())
    assert sum(written["strategy"]["allocation"].values()) == 5
    assert out.read_text().startswith("# fitted by `branchwise allocate` on 6 problems")
    merged = {**data, "strategy": written["strategy"]}
    assert parse_recipe(merged).strategy.name == "osca"
    # a recipe of another strategy is refused in one line
    other = tmp_path / "sc.yaml"
    other.write_text(yaml.safe_dump({**data, "strategy": {"name": "self_consistency"}}))
    assert main(["allocate", str(other), "--out", str(out)]) == 2
    assert "needs an osca recipe" in capsys.readouterr().err

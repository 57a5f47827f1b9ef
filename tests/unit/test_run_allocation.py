"""The run-level budget: a probe's agreement steers tokens to the problems that need them."""

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
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.scripted import EOS, Continuation
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.run_allocation import agreement, split_tokens
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.server.catalog import ModelCatalog
from branchwise.orchestrator.server.settings import ServerLimits
from branchwise.orchestrator.store import ResultStore
from tests.conftest import make_problem
from tests.readme import REPO
from tests.unit.sampling_support import LearningEngine

PROBLEMS = [make_problem(i) for i in range(300)]


class MixedDifficulty:
    """Three in four problems are easy (right 95 % of the time); the rest are contested:
    right 36 % of the time, otherwise one of three wrong answers (about 21 % each), so a vote
    of a few samples often misses and a vote of many misses less."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}

    def learn(self, solutions: dict[str, str]) -> None:
        for question, solution in solutions.items():
            self.answers[question] = int(solution.rsplit("Answer: ", 1)[1])

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        question = next(q for q in self.answers if q in prompt)
        right = self.answers[question]
        easy = zlib.crc32(question.encode()) % 4 != 0
        solved = rng.random() < (0.95 if easy else 0.36)
        answer = right if solved else right + rng.randint(1, 3)
        body = f"Answer: {answer}" + EOS
        return Continuation(body, (-0.1,) * len(body))


def run(
    run_tokens: int | None,
    *,
    rule: str = "agreement",
    seed: int = 0,
    strategy: dict[str, Any] | None = None,
    problems: list[Any] = PROBLEMS,
) -> tuple[list[ProblemResult], dict[str, Any] | None]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": strategy or {"name": "self_consistency", "n": 64},
            "sampling": {"max_tokens": 16},
            "budget": {"run_generated_tokens": run_tokens},
            "allocation": {"probe_samples": 4, "rule": rule},
            "scorers": [{"kind": "reference_answer", "name": "oracle"}],
            "seed": seed,
        }
    )
    engine = LearningEngine(MixedDifficulty())
    engine.learn({p.question: p.solution or "" for p in problems})

    async def go() -> tuple[list[ProblemResult], dict[str, Any] | None]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            results = await orchestrator.run(problems)
            report = orchestrator.run_budget
            return results, None if report is None else report.to_dict()

    return asyncio.run(go())


def accuracy(results: list[ProblemResult]) -> float:
    return sum(bool(r.correct) for r in results) / len(results)


def spent(results: list[ProblemResult]) -> int:
    return sum(int(r.usage["generated_tokens"]) for r in results)


def test_the_probe_steers_the_run_budget_to_contested_problems() -> None:
    # about 10 tokens a sample: 300 problems x 12 samples' worth, 4 of them the probe
    budget = 300 * 12 * 10
    adaptive, report = run(budget)
    uniform, _ = run(budget, rule="uniform")
    assert report is not None and report["generated_tokens"] == spent(adaptive) <= budget
    assert spent(uniform) <= budget and spent(adaptive) > 0.9 * budget
    # the claim: the same run budget, split by the probe, gets more problems right (every
    # seed; by 3 points or more on average)
    gains = [accuracy(adaptive) - accuracy(uniform)]
    for seed in (1, 2):
        gains.append(
            accuracy(run(budget, seed=seed)[0])
            - accuracy(run(budget, rule="uniform", seed=seed)[0])
        )
    assert min(gains) > 0 and sum(gains) / len(gains) >= 0.03, gains
    shares = [r.detail["run_allocation"] for r in adaptive]
    unanimous = [s for s in shares if s["probe_agreement"] == 1.0]
    contested = [s for s in shares if s["probe_agreement"] <= 0.5]
    assert len(unanimous) > 150 and len(contested) > 30
    assert all(s["share_tokens"] == 0 and s["extra_samples"] == 0 for s in unanimous)
    even = [r.detail["run_allocation"]["extra_samples"] for r in uniform]
    assert min(s["extra_samples"] for s in contested) > max(even)
    # the probe's samples vote with the later ones: one tree per problem
    graph = adaptive[0].graph
    assert graph is not None
    assert len(graph.children("r")) == shares[0]["probe_samples"] + shares[0]["extra_samples"]


@pytest.mark.parametrize("budget", [50, 600, 2000, 9000])
@pytest.mark.parametrize("rule", ["agreement", "uniform"])
def test_the_run_budget_is_never_overspent(budget: int, rule: str) -> None:
    results, report = run(budget, rule=rule, problems=PROBLEMS[:20])
    assert report is not None
    assert spent(results) <= budget
    assert report["probe_tokens"] + report["allocated_tokens"] <= budget
    assert all(r.error is None for r in results)


def test_best_of_n_ranks_the_probe_samples_too() -> None:
    results, _ = run(
        3000,
        strategy={"name": "best_of_n", "n": 8, "scorer": "oracle"},
        problems=PROBLEMS[:12],
    )
    for result in results:
        assert result.graph is not None
        probe = result.graph.children("r")[: result.detail["run_allocation"]["probe_samples"]]
        assert all(result.graph.state(n.id).scores for n in probe)
    assert accuracy(results) == 1.0  # the exact checker finds a right sample everywhere


def test_run_budget_needs_a_strategy_that_draws_n_samples() -> None:
    with pytest.raises(RecipeError, match=r"budget\.run_generated_tokens: the run-level allocator"):
        parse_recipe(
            {
                "engine": {"kind": "scripted"},
                "strategy": {"name": "beam_search", "beam_width": 2, "scorer": "s"},
                "scorers": [{"kind": "reference_steps", "name": "s"}],
                "budget": {"run_generated_tokens": 1000},
            }
        )


def test_split_and_agreement_rules() -> None:
    assert agreement(["3", "3", None, "4"]) == 0.5
    assert agreement([None, None]) == 0.0
    assert split_tokens([0.0, 1.0, 3.0], 100, 1000) == [0, 25, 75]
    # a capped share passes what it cannot take to the others
    assert split_tokens([1.0, 1.0, 8.0], 100, 40) == [30, 30, 40]
    assert sum(split_tokens([0.3, 0.7, 0.2, 0.9], 997, 300)) <= 997
    assert split_tokens([0.0, 0.0], 100, 100) == [0, 0]


def test_the_server_refuses_a_run_budget(tmp_path: Path) -> None:
    recipe = tmp_path / "pooled.yaml"
    recipe.write_text(
        "engine: {kind: scripted}\nstrategy: {name: self_consistency, n: 4}\n"
        "budget: {run_generated_tokens: 1000}\n"
    )
    with pytest.raises(RecipeError, match="a server answers requests one search at a time"):
        ModelCatalog.load([recipe], ServerLimits())


VAL = REPO / "examples/testbed/data/val.jsonl"


def run_budget_recipe(folder: Path, tokens: int) -> Path:
    """The bundled run-budget recipe on the scripted engine over val, with ``tokens`` to spend."""
    data = yaml.safe_load((REPO / "examples/recipes/run_budget.yaml").read_text())
    data["engine"] = {"kind": "scripted", "error_rate": 0.3, "solutions": str(VAL)}
    data["sampling"]["max_tokens"] = 200  # one token per character on the scripted engine
    data["dataset"] = {"path": str(VAL)}
    data["budget"] = {"run_generated_tokens": tokens}
    recipe = folder / "run_budget.yaml"
    recipe.write_text(yaml.safe_dump(data))
    return recipe


def test_eval_keeps_to_the_run_budget_across_a_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = run_budget_recipe(tmp_path, 40_000)
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--limit", "10", "--quiet"]) == 0
    first = ResultStore(out, read_only=True)
    with first:
        spent_first = sum(r["usage"]["generated_tokens"] for r in first.records())
    assert 0 < spent_first <= 40_000
    capsys.readouterr()
    assert main(["eval", str(recipe), "--out", str(out), "--limit", "30"]) == 0
    assert "run budget:" in capsys.readouterr().err
    with ResultStore(out, read_only=True) as store:
        records = store.records()
    assert len(records) == 30
    assert sum(r["usage"]["generated_tokens"] for r in records) <= 40_000
    assert all("run_allocation" in r["detail"] for r in records)


def test_ray_refuses_a_run_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "pooled.yaml"
    recipe.write_text(
        "engine: {kind: scripted}\nstrategy: {name: self_consistency, n: 4}\n"
        "budget: {run_generated_tokens: 1000}\n"
    )
    argv = [
        "eval",
        str(recipe),
        "--question",
        "1+1?",
        "--executor",
        "ray",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "Ray workers would each spend it" in capsys.readouterr().err


def test_a_second_writer_under_a_run_budget_is_refused_while_the_first_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = run_budget_recipe(tmp_path, 20_000)
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--limit", "4", "--quiet"]) == 0
    other = ResultStore(out)  # another writer (a live process on this host) holds a problem
    with other:
        assert other.claim(load_problems(VAL, limit=8)[6], 6)
        capsys.readouterr()
        assert main(["eval", str(recipe), "--out", str(out), "--limit", "8", "--quiet"]) != 0
        err = capsys.readouterr().err
        assert "another process is running 1 of its problems under budget.run_gen" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        other.release()
    with ResultStore(out, read_only=True) as store:
        assert len(store.done_ids()) == 4  # the finished problems are untouched
    assert main(["eval", str(recipe), "--out", str(out), "--limit", "8", "--quiet"]) == 0

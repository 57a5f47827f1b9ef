"""The CLI and the crash-safe result store: resume without losing or repeating problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.results import ProblemResult, ResultStore
from tests.conftest import make_problem


def _dataset(tmp_path: Path, count: int) -> Path:
    data = tmp_path / "problems.jsonl"
    lines = []
    for i in range(count):
        p = make_problem(i)
        lines.append(
            json.dumps(
                {"id": p.id, "question": p.question, "answer": p.reference, "solution": p.solution}
            )
        )
    data.write_text("\n".join(lines) + "\n")
    return data


def _recipe(tmp_path: Path, dataset: Path) -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "engine: {kind: scripted, error_rate: 0.2}\n"
        "strategy: {name: self_consistency, n: 5}\n"
        "sampling: {max_tokens: 64}\n"
        f"dataset: {{path: {dataset.name}}}\n"
    )
    return recipe


def test_run_resumes_after_a_crash_without_repeating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 6))
    out = tmp_path / "results.jsonl"
    assert main(["run", str(recipe), "--out", str(out), "--limit", "3", "--quiet"]) == 0
    first = out.read_text().splitlines()
    assert len(first) == 3
    # a crash mid-write leaves a torn last line
    with out.open("a") as handle:
        handle.write('{"problem_id": "p3", "answ')
    assert main(["run", str(recipe), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resuming: 3 problems already" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["problem_id"] for r in records] == ["p0", "p1", "p2", "p3", "p4", "p5"]
    assert out.read_text().splitlines()[:3] == first
    assert "problems: 6" in printed


def test_store_ignores_a_torn_line_and_appends_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"problem_id": "a", "answer": "1"}\n{"problem_id": "b", "ans')
    store = ResultStore(path)
    assert store.done("a") and not store.done("b")
    store.append(ProblemResult(problem_id="b", answer="2"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["problem_id"] for line in lines] == ["a", "b"]


def test_bad_dataset_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path, 2)
    data.write_text(data.read_text() + "{not json}\n")
    recipe = _recipe(tmp_path, data)
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "problems.jsonl:3: not valid JSON" in err


def test_validate_and_listings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 1))
    assert main(["validate", str(recipe)]) == 0
    assert main(["strategies"]) == 0
    assert main(["scorers"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out
    assert "self_consistency: " in out and "    n (default 16)" in out
    assert "reference_steps [step]" in out


def test_invalid_recipe_exits_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: {kind: scripted}\nstrategy: {name: self_consistency, n: -1}\n")
    assert main(["validate", str(bad)]) == 2
    assert "strategy.n" in capsys.readouterr().err


def test_failed_problems_run_again_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    store.append(ProblemResult(problem_id="a", answer=None, error="EngineError: died"))
    store.append(ProblemResult(problem_id="b", answer="3"))
    again = ResultStore(path)
    assert not again.done("a") and again.done("b")
    again.append(ProblemResult(problem_id="a", answer="7"))
    assert ResultStore(path).done("a")
    assert ResultStore(path).records["a"]["answer"] == "7"


def test_a_complete_record_without_newline_is_rerun_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"problem_id": "a", "answer": "1"}\n{"problem_id": "b", "answer": "2"}')
    store = ResultStore(path)
    assert store.done("a") and not store.done("b")
    store.append(ProblemResult(problem_id="b", answer="2"))
    assert ResultStore(path).done("b")


def test_resume_with_a_changed_recipe_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path, 4)
    recipe = _recipe(tmp_path, dataset)
    out = tmp_path / "results.jsonl"
    assert main(["run", str(recipe), "--out", str(out), "--limit", "2", "--quiet"]) == 0
    before = out.read_text()
    # the concurrency and the dataset slice are not part of the recipe's identity
    recipe.write_text(recipe.read_text() + "concurrency: 3\n")
    assert main(["run", str(recipe), "--out", str(out), "--limit", "3", "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == 3
    before = out.read_text()
    # a different n would mix two runs' answers in one file
    recipe.write_text(recipe.read_text().replace("n: 5", "n: 3"))
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 2
    assert "3 results were made by a different recipe" in capsys.readouterr().err
    assert out.read_text() == before  # nothing written, nothing lost
    flag = ["--allow-recipe-change", "--quiet"]
    assert main(["run", str(recipe), "--out", str(out), *flag]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["problem_id"] for r in records] == ["p0", "p1", "p2", "p3"]
    assert len({r["recipe"] for r in records}) == 2


def test_recipe_fingerprint_ignores_plumbing_only() -> None:
    from orchestrator.recipe import parse_recipe

    def fingerprint(**changes: object) -> str:
        data: dict[str, object] = {
            "engine": {"kind": "openai", "base_urls": ["http://a:1"], "model": "m"},
            "strategy": {"name": "self_consistency", "n": 4},
            "seed": 1,
        }
        data.update(changes)
        return parse_recipe(data).fingerprint()

    base = fingerprint()
    moved = {"kind": "openai", "base_urls": ["http://b:2", "http://c:3"], "model": "m"}
    assert fingerprint(engine=moved, concurrency=7) == base
    assert fingerprint(seed=2) != base
    assert fingerprint(strategy={"name": "self_consistency", "n": 5}) != base
    other_model = {"kind": "openai", "base_urls": ["http://a:1"], "model": "other"}
    assert fingerprint(engine=other_model) != base


def test_store_keeps_what_a_problem_lent_for_a_resumed_run(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    store = ResultStore(path)
    store.append(ProblemResult("a", "3", lending={"lent": 2, "borrowed": 0}))
    store.append(ProblemResult("b", "4"))
    again = ResultStore(path)
    assert again.lending("a") == {"lent": 2, "borrowed": 0}
    assert again.lending("b") == {"lent": 0, "borrowed": 0}  # never lent: nothing stored
    assert "lending" not in again.records["b"]


def test_moving_the_reward_model_server_keeps_the_fingerprint() -> None:
    from orchestrator.recipe import parse_recipe

    def fingerprint(**prm: object) -> str:
        scorer = {"kind": "prm", "model": "prm", "backend": "http", "base_url": "http://a:1"}
        return parse_recipe(
            {
                "engine": {"kind": "scripted"},
                "strategy": {"name": "beam_search", "scorer": "prm"},
                "scorers": [{**scorer, **prm}],
            }
        ).fingerprint()

    base = fingerprint()
    assert fingerprint(base_url="http://b:2", max_batch=8) == base
    assert fingerprint(label=0) != base

"""`branchwise export`: one row per sample with lm-evaluation-harness's field names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from branchwise.orchestrator.cli import main
from tests.conftest import REPO

SOLUTIONS = REPO / "examples/testbed/data/eval.jsonl"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    recipe = tmp / "sc.yaml"
    recipe.write_text(
        f"engine: {{kind: scripted, error_rate: 0.3, solutions: {SOLUTIONS}}}\n"
        "strategy: {name: self_consistency, n: 4}\nsampling: {max_tokens: 200}\n"
        'step_delimiter: "\\n\\n"\nanswer: {method: boxed}\n'
        f"dataset: {{path: {SOLUTIONS}, limit: 5}}\n"
    )
    out = tmp / "sweep"
    assert main(["eval", str(recipe), "--out", str(out), "--budgets", "128,1024", "--quiet"]) == 0
    return out


def test_jsonl_has_one_row_per_problem_and_run_with_lm_eval_names(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "samples.jsonl"
    assert main(["export", str(sweep), "--out", str(out)]) == 0
    assert "export: 10 rows" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10  # 5 problems x 2 budgets
    first = rows[0]
    truth = json.loads(SOLUTIONS.read_text().splitlines()[0])
    assert first["doc_id"] == 0 and first["doc"] == {"id": "eval-0", "question": truth["question"]}
    assert first["target"] == truth["answer"] and first["problem_id"] == "eval-0"
    assert first["filtered_resps"] == [first["answer"]]
    assert len(first["resps"]) <= 4 and first["strategy"] == "self_consistency"
    assert [r["budget"] for r in rows] == [128] * 5 + [1024] * 5
    assert all(r["generated_tokens"] <= r["budget"] for r in rows)
    assert len({tuple(r) for r in rows}) == 1  # the same keys in every row
    assert {r["correct"] for r in rows} <= {True, False}


def test_parquet_holds_the_same_rows(sweep: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the `parquet` extra (pyarrow)")
    jsonl, parquet = tmp_path / "s.jsonl", tmp_path / "s.parquet"
    assert main(["export", str(sweep), "--out", str(jsonl)]) == 0
    assert main(["export", str(sweep), "--format", "parquet", "--out", str(parquet)]) == 0
    table = pq.read_table(parquet)
    assert table.num_rows == 10
    assert table.to_pylist() == [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_export_of_a_folder_that_is_no_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a results folder" in err

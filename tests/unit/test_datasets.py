"""Datasets in the shapes people bring: GSM8K, MATH-500, and any JSONL through a field map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from branchwise.core.errors import DatasetError
from branchwise.orchestrator.cli import main
from branchwise.orchestrator.datasets import field_map, load_problems

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "datasets"


def test_gsm8k_sample_reads_the_answer_after_hashes() -> None:
    problems = load_problems(SAMPLES / "gsm8k_sample.jsonl", format="gsm8k")
    assert [p.reference for p in problems] == ["22", "110", "52", "34", "1000"]
    assert problems[0].id == "line-1"
    assert problems[0].solution is not None and "####" not in problems[0].solution


def test_math500_sample_keeps_latex_answers_and_metadata() -> None:
    problems = load_problems(SAMPLES / "math500_sample.jsonl", format="math500")
    assert problems[0].reference == "\\frac{1}{2}"
    assert problems[0].id == "sample/prealgebra/0.json"
    assert problems[2].reference == "(1, 2)"
    assert problems[0].metadata == {"subject": "Prealgebra", "level": 1}


def test_any_jsonl_through_a_field_map_with_case_folded_keys() -> None:
    mapping = field_map("jsonl", {"question": "problem", "answer": "answer", "id": "id"})
    problems = load_problems(SAMPLES / "aime_style_sample.jsonl", fields=mapping)
    assert [p.id for p in problems] == ["2026-I-1", "2026-I-2", "2026-I-3"]
    assert problems[0].reference == "24"  # an integer answer becomes a string


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "a", "question": None}, "question field 'question' is missing"),
        ({"id": "a", "question": "  "}, "question field 'question' is empty"),
        ({"id": "a", "question": 7}, "question field 'question' is not a string (got int)"),
        ({"id": ["x"], "question": "q"}, "id field 'id' must be a string or an integer"),
        (
            {"id": "a", "question": "q", "answer": {"x": 1}},
            "answer field 'answer' must be a string or a number",
        ),
    ],
)
def test_bad_lines_name_the_line_and_field(
    tmp_path: Path, line: dict[str, object], message: str
) -> None:
    file = tmp_path / "d.jsonl"
    file.write_text(json.dumps({"id": "ok", "question": "fine"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DatasetError) as info:
        load_problems(file)
    assert f"{file}:2: {message}" in str(info.value)


def test_non_utf8_and_gsm8k_without_hashes_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "a", "question": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"latin1\.jsonl:1: not UTF-8"):
        load_problems(bad)
    gsm = tmp_path / "g.jsonl"
    gsm.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(DatasetError, match=r"g\.jsonl:1: answer field 'answer' has no '####"):
        load_problems(gsm, format="gsm8k")


def test_unknown_field_name_is_refused() -> None:
    with pytest.raises(DatasetError, match="unknown key 'questoin'"):
        field_map("jsonl", {"questoin": "Problem"})


def test_cli_field_mapping_runs_a_custom_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "engine: {kind: scripted}\nstrategy: {name: self_consistency, n: 2}\n"
        "sampling: {max_tokens: 16}\n"
    )
    data = SAMPLES / "aime_style_sample.jsonl"
    code = main(
        ["run", str(recipe), "--dataset", str(data), "--format", "jsonl", "--field",
         "question=Problem", "--field", "id=ID", "--field", "answer=Answer", "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert "problems: 3  failed: 0" in capsys.readouterr().out
    assert main(["run", str(recipe), "--dataset", str(data), "--field", "question"]) == 2
    assert "expected PART=KEY" in capsys.readouterr().err

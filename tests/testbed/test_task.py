"""The testbed generator: determinism, disjoint splits, formats and the committed data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import task  # examples/testbed is put on sys.path by conftest.py

from branchwise.verifiers.arithmetic_steps import check_steps, extract_answer, parse_steps, solve
from tests.testbed.conftest import TESTBED

SMALL = {"eval": 200, "val": 100, "train": 1000}


def test_same_seed_same_problems() -> None:
    first = task.make_splits(seed=3, sizes=SMALL)
    second = task.make_splits(seed=3, sizes=SMALL)
    assert first == second


def test_other_seed_other_problems() -> None:
    first = task.make_splits(seed=3, sizes=SMALL)
    other = task.make_splits(seed=4, sizes=SMALL)
    assert [p.question for p in first["eval"]] != [p.question for p in other["eval"]]


def test_eval_does_not_depend_on_train_size() -> None:
    small = task.make_splits(seed=0, sizes={"eval": 50, "val": 10, "train": 10})
    large = task.make_splits(seed=0, sizes={"eval": 50, "val": 10, "train": 500})
    assert small["eval"] == large["eval"]


def test_splits_are_disjoint_and_deduplicated() -> None:
    splits = task.make_splits(seed=0, sizes=SMALL)
    seen: set[str] = set()
    for problems in splits.values():
        questions = {p.question for p in problems}
        assert len(questions) == len(problems)
        assert not questions & seen
        seen |= questions


def test_problems_are_well_formed() -> None:
    for problem in task.make_splits(seed=1, sizes=SMALL)["train"]:
        steps = parse_steps(problem.solution)
        assert 3 <= len(steps) <= 5  # 2-4 operations, then the answer step
        assert problem.compact_length <= task.MAX_CHARS
        assert all(check_steps(problem.question, problem.solution))
        assert problem.solution.endswith(f"\n\nThe answer is \\boxed{{{problem.answer}}}.")
        assert steps == problem.step_texts and "\n\n\n" not in problem.solution
        assert int(problem.answer) == solve(problem.question) >= 0
        for step in problem.steps:
            assert 0 <= step.result <= task.MAX_VALUE


def test_written_formats(tmp_path: Path) -> None:
    splits = task.make_splits(seed=0, sizes={"eval": 5, "val": 5, "train": 5})
    task.write_splits(tmp_path, splits)
    for split in ("train", "val", "eval"):
        records = task.read_jsonl(tmp_path / f"{split}.jsonl")
        assert [set(r) for r in records] == [{"id", "question", "answer", "solution"}] * 5
        gsm = task.read_jsonl(tmp_path / "gsm8k" / f"{split}.jsonl")
        for record, g in zip(records, gsm, strict=True):
            assert set(g) == {"question", "answer"}
            assert g["answer"].endswith(f"#### {record['answer']}")
            assert extract_answer(g["answer"]) == record["answer"]


@pytest.mark.parametrize("split", ["eval", "val"])
def test_committed_data_matches_generator(split: str) -> None:
    path = TESTBED / "data" / f"{split}.jsonl"
    records = task.read_jsonl(path)
    regenerated = task.make_splits(seed=0, sizes={"eval": 600, "val": 300, "train": 0})[split]
    assert records == [p.to_record() for p in regenerated]
    assert all(isinstance(r["answer"], str) for r in records)


def test_committed_eval_has_no_train_overlap() -> None:
    eval_questions = {r["question"] for r in task.read_jsonl(TESTBED / "data" / "eval.jsonl")}
    train = task.make_splits(seed=0, sizes={"eval": 600, "val": 300, "train": 5000})["train"]
    assert not eval_questions & {p.question for p in train}
    assert json.dumps(sorted(eval_questions))  # plain strings, serialisable

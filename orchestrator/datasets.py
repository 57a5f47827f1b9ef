"""Reading problems from JSONL files (Branchwise's own format and GSM8K's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from core.errors import DatasetError
from core.problem import Problem
from verifiers.answers import AnswerSpec, extract_answer


def load_problems(
    path: str | Path,
    *,
    format: Literal["branchwise", "gsm8k"] = "branchwise",
    limit: int | None = None,
) -> list[Problem]:
    """Problems from a JSONL file; a bad line raises naming the file and line number."""
    file = Path(path)
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read dataset: {exc.strerror}") from None
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        problem = _gsm8k(record, where, number) if format == "gsm8k" else _native(record, where)
        if problem.id in seen:
            raise DatasetError(f"{where}: duplicate problem id {problem.id!r}")
        seen.add(problem.id)
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    return problems


def _native(record: dict[str, object], where: str) -> Problem:
    for key in ("id", "question"):
        if key not in record:
            raise DatasetError(f"{where}: missing key {key!r}")
    try:
        return Problem(
            id=str(record["id"]),
            question=str(record["question"]),
            reference=None if record.get("answer") is None else str(record["answer"]),
            solution=None if record.get("solution") is None else str(record["solution"]),
            metadata={k: v for k, v in record.items() if k not in _NATIVE_KEYS},
        )
    except ValidationError as exc:
        raise DatasetError(f"{where}: {exc.errors()[0]['msg']}") from None


_NATIVE_KEYS = {"id", "question", "answer", "solution"}


def _gsm8k(record: dict[str, object], where: str, number: int) -> Problem:
    question, answer = record.get("question"), record.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        raise DatasetError(f"{where}: GSM8K lines need string 'question' and 'answer'")
    reference = extract_answer(answer, AnswerSpec(method="gsm8k"))
    if reference is None:
        raise DatasetError(f"{where}: GSM8K answer has no '#### <answer>' line")
    solution = answer.split("####")[0]
    return Problem(
        id=str(record.get("id", f"line-{number}")),
        question=question,
        reference=reference,
        solution=solution,
    )

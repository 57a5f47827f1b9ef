"""Reading problems from JSONL: Branchwise's own lines, GSM8K, MATH-500, or any mapping.

A format is a preset of which field holds what (:class:`FieldMap`); ``fields`` in a recipe
(or ``--field`` on the command line) overrides any of them, so a data set with its own column
names (AIME's ``Problem``/``Answer``, say) needs no code. Keys match case-insensitively.
Every bad line fails the load with the file, the line number and the field named; a loaded
data set never has a problem without a question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from branchwise.core.errors import DatasetError
from branchwise.core.problem import Problem
from branchwise.verifiers.answers import AnswerSpec, extract_answer

DatasetFormat = Literal["branchwise", "gsm8k", "math500", "jsonl"]
ReferenceForm = Literal["plain", "gsm8k", "boxed"]


class FieldMap(BaseModel):
    """Which key of a JSONL line holds each part of a problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field("id", description="Key of the problem id; absent: `line-N`.")
    question: str = Field("question", description="Key of the question text (required).")
    answer: str | None = Field("answer", description="Key of the reference answer, if any.")
    solution: str | None = Field("solution", description="Key of a reference solution.")
    reference_form: ReferenceForm = Field(
        "plain",
        description="How the answer field states the reference: plain; gsm8k ('... #### 72', "
        "the text before '####' becomes the solution); boxed (the last \\boxed{}).",
    )


PRESETS: dict[DatasetFormat, FieldMap] = {
    "branchwise": FieldMap(),
    "jsonl": FieldMap(),
    "gsm8k": FieldMap(solution=None, reference_form="gsm8k"),
    "math500": FieldMap(id="unique_id", question="problem"),
}
"""Each format's field map: GSM8K (question, answer ending in '#### x'); MATH-500 (problem,
solution, answer as bare LaTeX, subject, level, unique_id)."""


class DatasetSpec(BaseModel):
    """Where the problems come from and how a line maps onto a problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="JSONL file (relative to the recipe).")
    format: DatasetFormat = Field(
        "branchwise",
        description="branchwise/jsonl: id, question, answer, solution; gsm8k: question, answer "
        "'#### x'; math500: unique_id, problem, answer, solution. `fields` overrides any key.",
    )
    fields: dict[str, str | None] = Field(
        default_factory=dict,
        description="Overrides of the format's keys, e.g. {question: Problem, answer: Answer}.",
    )
    limit: int | None = Field(None, ge=1, description="Use only the first `limit` problems.")

    @model_validator(mode="after")
    def _check_fields(self) -> DatasetSpec:
        try:
            self.field_map()
        except (DatasetError, ValidationError) as exc:
            raise ValueError(str(exc).replace("dataset.fields: ", "")) from None
        return self

    def field_map(self) -> FieldMap:
        """The format's preset with ``fields`` applied (errors name the bad key)."""
        return field_map(self.format, self.fields)


def field_map(format: DatasetFormat, overrides: dict[str, Any] | None = None) -> FieldMap:
    preset = PRESETS[format]
    if not overrides:
        return preset
    unknown = sorted(set(overrides) - set(FieldMap.model_fields))
    if unknown:
        known = ", ".join(FieldMap.model_fields)
        raise DatasetError(f"dataset.fields: unknown key {unknown[0]!r} (known: {known})")
    return preset.model_copy(update=overrides)


def load_problems(
    path: str | Path,
    *,
    format: DatasetFormat = "branchwise",
    fields: FieldMap | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Problems from a JSONL file; a bad line raises naming the file, line and field."""
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    mapping = fields or PRESETS[format]
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read dataset: {exc.strerror}") from None
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{file}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{where}: not UTF-8 text (byte {exc.start})") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
        bad = unencodable(record)
        if bad is not None:
            raise DatasetError(
                f"{where}: {bad} holds a lone surrogate (a \\ud800-style escape that is not "
                "Unicode text); fix the line"
            )
        problem = read_problem(record, mapping, where, number)
        if problem.id in seen:
            raise DatasetError(f"{where}: duplicate problem id {problem.id!r}")
        seen.add(problem.id)
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise DatasetError(f"{file}: no problems in the file")
    return problems


def unencodable(value: Any, path: str = "the line") -> str | None:
    """Where a JSON value holds a string UTF-8 cannot encode (a lone surrogate), or None.

    JSON allows escapes such as ``\\ud800`` that decode to no character; such text could be
    neither hashed nor stored, so it is refused at the load, naming the place.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unencodable(key, f"a key of {path}") or unencodable(item, f"field {key!r}")
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = unencodable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def read_problem(record: dict[str, Any], mapping: FieldMap, where: str, number: int) -> Problem:
    """One problem from one JSONL object."""
    keys = {key.lower(): key for key in record}

    def get(name: str | None) -> Any:
        if name is None:
            return None
        key = name if name in record else keys.get(name.lower())
        return record.get(key) if key is not None else None

    question = get(mapping.question)
    if not isinstance(question, str) or not question.strip():
        state = "missing" if question is None else "empty" if isinstance(question, str) else ""
        what = state or f"not a string (got {type(question).__name__})"
        raise DatasetError(f"{where}: question field {mapping.question!r} is {what}")
    raw_id = get(mapping.id)
    if raw_id is None:
        problem_id = f"line-{number}"
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id).strip():
        problem_id = str(raw_id)
    else:
        raise DatasetError(f"{where}: id field {mapping.id!r} must be a string or an integer")
    reference, solution = _reference(get(mapping.answer), mapping, where)
    stated_solution = get(mapping.solution)
    if stated_solution is not None:
        solution = str(stated_solution)
    used = {mapping.id, mapping.question, mapping.answer, mapping.solution}
    metadata = {k: v for k, v in record.items() if k not in used}
    return Problem(
        id=problem_id,
        question=question,
        answer=reference,
        solution=solution,
        metadata=metadata,
    )


def _reference(answer: Any, mapping: FieldMap, where: str) -> tuple[str | None, str | None]:
    """The reference answer (and, for GSM8K, the worked solution before '####')."""
    if answer is None:
        return None, None
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise DatasetError(
            f"{where}: answer field {mapping.answer!r} must be a string or a number, "
            f"got {type(answer).__name__}"
        )
    text = str(answer)
    if mapping.reference_form == "plain":
        return text.strip() or None, None
    method: Literal["gsm8k", "boxed"] = mapping.reference_form
    reference = extract_answer(text, AnswerSpec(method=method))
    if reference is None:
        marker = "'#### <answer>' line" if method == "gsm8k" else "\\boxed{...}"
        raise DatasetError(f"{where}: answer field {mapping.answer!r} has no {marker}")
    solution = text.split("####")[0].rstrip() if method == "gsm8k" else None
    return reference, solution

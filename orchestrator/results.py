"""Per-problem results and the append-only, crash-safe result store.

Each finished problem is one JSON line, flushed and fsynced before the next is written, so a
killed run loses at most the problem in flight. A torn last line (a crash mid-write) is
ignored on resume and that problem runs again. Each line carries the recipe's fingerprint, so
resuming with a changed recipe is refused instead of silently mixing two runs' results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BranchwiseError
from core.graph import SearchGraph


@dataclass
class ProblemResult:
    """The outcome of one problem's search."""

    problem_id: str
    answer: str | None
    node_id: str | None = None
    reference: str | None = None
    correct: bool | None = None
    usage: dict[str, float | int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    graph: SearchGraph | None = None
    latency: float | None = None
    """Seconds from the start of the search to its result."""
    lending: dict[str, int] = field(default_factory=dict)
    """Paths (or other units) lent to / borrowed from the run's pool; see orchestrator.lending."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_record(self, *, with_trace: bool = False) -> dict[str, Any]:
        record: dict[str, Any] = {
            "problem_id": self.problem_id,
            "answer": self.answer,
            "node_id": self.node_id,
            "reference": self.reference,
            "correct": self.correct,
            "usage": self.usage,
            "detail": self.detail,
            "error": self.error,
        }
        if self.lending:
            record["lending"] = self.lending
        if with_trace and self.graph is not None:
            record["trace"] = self.graph.to_dict()
        return record


class ResultStore:
    """Append-only JSONL of finished problems, keyed by problem id."""

    def __init__(
        self,
        path: str | Path,
        *,
        with_traces: bool = False,
        recipe: str | None = None,
        allow_recipe_change: bool = False,
    ) -> None:
        """``recipe``: the run's recipe fingerprint, stored on every line and checked on load."""
        self.path = Path(path)
        self.with_traces = with_traces
        self.recipe = recipe
        self.records: dict[str, dict[str, Any]] = {}
        self._load()
        if recipe is not None and not allow_recipe_change:
            self._check_recipe(recipe)

    def _check_recipe(self, recipe: str) -> None:
        other = sorted(
            {str(r["recipe"]) for r in self.records.values() if r.get("recipe")} - {recipe}
        )
        if other:
            count = sum(r.get("recipe") in other for r in self.records.values())
            raise BranchwiseError(
                f"{self.path}: {count} results were made by a different recipe (fingerprint "
                f"{', '.join(other)}; this recipe is {recipe}); resuming would mix the two runs. "
                "Use another --out file, or pass --allow-recipe-change to keep the old results."
            )

    def _load(self) -> None:
        if not self.path.exists():
            return
        text = self.path.read_text()
        lines = text.split("\n")
        # the part after the last newline was never completed: treat it as torn
        for line in lines[:-1]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn final line from a crash: that problem simply reruns
            if isinstance(record, dict) and "problem_id" in record:
                self.records[str(record["problem_id"])] = record

    def lending(self, problem_id: str) -> dict[str, int]:
        """What a stored problem lent to and borrowed from its run's pool (``PoolSeat.ledger``)."""
        stored = (self.records.get(problem_id) or {}).get("lending") or {}
        return {key: int(stored.get(key, 0)) for key in ("lent", "borrowed")}

    def done(self, problem_id: str) -> bool:
        """Finished without error; failed problems run again on resume (last record wins)."""
        record = self.records.get(problem_id)
        return record is not None and not record.get("error")

    def append(self, result: ProblemResult) -> None:
        record = result.to_record(with_trace=self.with_traces)
        if self.recipe is not None:
            record["recipe"] = self.recipe
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records[result.problem_id] = record

    def _repair_tail(self) -> None:
        """Cut a torn last line so new records never glue onto it."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size == 0:
            return
        with self.path.open("rb+") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return  # the common case: one byte read, not the whole file
            handle.seek(0)
            data = handle.read()
            handle.truncate(data.rfind(b"\n") + 1)

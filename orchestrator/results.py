"""Per-problem results: what one search produced (stored by ``orchestrator.store``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from branchwise.core.graph import SearchGraph

WarningKind = Literal["scorer_failed", "budget_ran_out", "answer_unreadable", "no_answer"]


@dataclass(frozen=True)
class SearchWarning:
    """One thing wrong with a finished search, in words (``message``) and as a kind."""

    kind: WarningKind
    message: str
    subject: str | None = None
    """What it is about, where a kind can be about several things (the scorer's name)."""

    @property
    def key(self) -> str:
        """Warnings with one key are the same problem (said once, counted after)."""
        return self.kind if self.subject is None else f"{self.kind}:{self.subject}"

    def to_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "message": self.message}
        if self.subject is not None:
            out["subject"] = self.subject
        return out


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
    warnings: list[SearchWarning] = field(default_factory=list)
    """What went wrong in a search that still returned (``orchestrator.result_warnings``)."""

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
        if self.warnings:
            record["warnings"] = [w.to_dict() for w in self.warnings]
        if with_trace and self.graph is not None:
            record["trace"] = self.graph.to_dict()
        return record

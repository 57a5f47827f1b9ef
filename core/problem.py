"""A problem to search: the question, its optional reference answer and its prompt."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """One task instance. ``reference`` is only used to grade, never shown to the search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Stable id; results and resumption key on it.")
    question: str = Field(description="The question text put into the prompt template.")
    reference: str | None = Field(None, description="Reference answer, for grading only.")
    solution: str | None = Field(None, description="Reference solution text, if known.")
    metadata: dict[str, Any] = Field(default_factory=dict)

"""A problem to search: the question, its optional reference answer and its prompt."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """One task instance. ``answer`` (the reference) grades results; the search never sees it.

    The field is ``answer``, as in every dataset format; ``reference=`` is accepted as an older
    spelling, and ``problem.reference`` reads the same value (the name results store it under).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(description="Stable id; results and resumption key on it.")
    question: str = Field(description="The question text put into the prompt template.")
    answer: str | None = Field(
        None,
        validation_alias=AliasChoices("answer", "reference"),
        description="The reference answer, for grading only.",
    )
    solution: str | None = Field(None, description="Reference solution text, if known.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Other fields of the dataset line, kept as they are."
    )

    @property
    def reference(self) -> str | None:
        """The reference answer (``answer``), under the name ``ProblemResult`` uses."""
        return self.answer

"""The answer spec: how a final answer is read from a solution text (extraction lives in
``verifiers.answers``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExtractionMethod = Literal["answer_line", "last_number", "boxed", "gsm8k", "regex"]


class AnswerSpec(BaseModel):
    """How a final answer is read from a solution text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: ExtractionMethod = Field(
        "answer_line",
        description="answer_line: 'Answer: X'; last_number; boxed: \\boxed{X}; gsm8k: '#### X'; "
        "regex: the first group of `pattern`.",
    )
    pattern: str | None = Field(None, description="Regex for method=regex (first group wins).")

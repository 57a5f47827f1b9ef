"""The answer spec: how a final answer is read from a solution text (extraction lives in
``verifiers.answers``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    @model_validator(mode="after")
    def _check_pattern(self) -> AnswerSpec:
        if self.method != "regex":
            return self
        if self.pattern is None:
            raise ValueError("answer.pattern: method regex needs a pattern with one group")
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"answer.pattern: {self.pattern!r} is not a regex ({exc})") from None
        if compiled.groups < 1:
            raise ValueError(
                f"answer.pattern: {self.pattern!r} has no group; the answer is the first "
                "group, e.g. 'answer is (\\S+)'"
            )
        return self

"""Reasoning formats: where a reasoning model's thinking ends and its answer begins.

Reasoning models (DeepSeek-R1, QwQ, Qwen3) write ``<think> ... </think>`` and then the
answer. With a format in the recipe, a path is *thinking* from its first generated token
until the end tag (the chat template often writes the start tag into the prompt, so the start
tag is just text inside the thinking); the answer is read only from the text after the end
tag, and a path that never closes its thinking has no answer. The thinking stays in the graph:
each node records how many of its tokens think (``Node.thinking_tokens``) and whether its
path is still thinking after it (``Node.thinking_open``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Reads = Literal["all", "thinking", "answer"]
"""Which part of a reasoning model's path a scorer reads: all of it, the thinking's steps
(search inside the thinking), or the answer after the end tag (its summary)."""


class ReasoningFormat(BaseModel):
    """How a reasoning model marks its thinking, and what budget forcing writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field("<think>", min_length=1, description="Text that opens the thinking.")
    end: str = Field(
        "</think>", min_length=1, description="Text that closes it; the answer follows."
    )
    continuation: str = Field(
        "Wait",
        min_length=1,
        description="Written in place of an end tag that comes before "
        "`budget.min_thinking_tokens` (s1's budget forcing), so the model thinks on.",
    )
    forced_end: str | None = Field(
        None,
        description="Text forced when `budget.max_thinking_tokens` is reached (default: the "
        "end tag; e.g. '\\n</think>\\n\\n' to close the thinking on its own line).",
    )

    @model_validator(mode="after")
    def _check_tags(self) -> ReasoningFormat:
        if self.start == self.end:
            raise ValueError(f"reasoning.end: {self.end!r} equals reasoning.start; they differ")
        if self.forced_end is not None and self.end not in self.forced_end:
            raise ValueError(
                f"reasoning.forced_end: {self.forced_end!r} must contain the end tag "
                f"{self.end!r}, or forcing would not close the thinking"
            )
        return self

    @property
    def forced_end_text(self) -> str:
        """What budget forcing writes to close the thinking."""
        return self.forced_end if self.forced_end is not None else self.end


@dataclass(frozen=True)
class ReasoningSplit:
    """A solution cut at the end of its thinking; ``answer`` None: never closed."""

    thinking: str
    answer: str | None

    @property
    def closed(self) -> bool:
        return self.answer is not None


def split_reasoning(text: str, fmt: ReasoningFormat) -> ReasoningSplit:
    """The thinking (up to and including the first end tag) and the answer part after it."""
    at = text.find(fmt.end)
    if at < 0:
        return ReasoningSplit(thinking=text, answer=None)
    cut = at + len(fmt.end)
    return ReasoningSplit(thinking=text[:cut], answer=text[cut:])


def unclosed_reason(fmt: ReasoningFormat) -> str:
    """The one wording of why a finished path has no answer."""
    return f"thinking never closed (no {fmt.end!r}): no answer"


def answer_part(text: str, fmt: ReasoningFormat | None) -> str | None:
    """The text an answer is read from: all of it without a format, else after the end tag."""
    if fmt is None:
        return text
    return split_reasoning(text, fmt).answer


def find_ids(haystack: tuple[int, ...], needle: tuple[int, ...]) -> int:
    """The first index of ``needle`` as a contiguous run in ``haystack``, or -1."""
    if not needle:
        return -1
    first = needle[0]
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i] == first and haystack[i : i + len(needle)] == needle:
            return i
    return -1


@dataclass(frozen=True)
class ReasoningTags:
    """A format with its texts as the engine's token ids (resolved once per run)."""

    format: ReasoningFormat
    end_ids: tuple[int, ...]
    forced_end_ids: tuple[int, ...]
    continuation_ids: tuple[int, ...]

    def segment(self, thought: str, text: str, token_ids: tuple[int, ...]) -> tuple[int, bool]:
        """How many of a segment's tokens think, and whether the thinking is still open after
        it, for a segment that starts inside the thinking (``thought``: the path's text so
        far, all of it thinking).

        The end tag is looked up in the path's text (it may straddle two segments). Its
        position in tokens is exact when the tag's token ids appear in the segment (a special
        token, or one token per character); otherwise it is estimated from the share of the
        segment's characters before it.
        """
        at = (thought + text).find(self.format.end)
        if at < 0:
            return len(token_ids), True
        chars = at + len(self.format.end) - len(thought)  # the tag's end inside this segment
        found = find_ids(token_ids, self.end_ids)
        if found >= 0:
            return found + len(self.end_ids), False
        if not text:
            return 0, False
        return max(0, min(len(token_ids), round(len(token_ids) * chars / len(text)))), False


def read_steps(steps: tuple[str, ...], fmt: ReasoningFormat, reads: Reads) -> tuple[str, ...]:
    """The steps of the part a scorer reads: ``thinking`` keeps the text before the end tag
    (the start tag dropped), ``answer`` the text after it (none while the path thinks);
    a step the tag cuts keeps its side of the cut; blank pieces are dropped."""
    if reads == "all":
        return steps
    text = "".join(steps)
    at = text.find(fmt.end)
    cut, after = (len(text), len(text)) if at < 0 else (at, at + len(fmt.end))
    pieces: list[str] = []
    pos = 0
    for step in steps:
        start, end = pos, pos + len(step)
        pos = end
        if reads == "thinking":
            piece = text[start : min(end, cut)] if start < cut else ""
        else:
            piece = text[max(start, after) : end] if end > after else ""
        if not pieces and reads == "thinking" and piece.lstrip().startswith(fmt.start):
            piece = piece.lstrip()[len(fmt.start) :].lstrip("\r\n")
        if piece.strip():
            pieces.append(piece)
    return tuple(pieces)

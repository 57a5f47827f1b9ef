"""A scripted reasoning model: thinks inside ``<think> ... </think>``, then answers.

It wraps the scripted engine's reference replay. Each sample plans a random number of
thinking lines (re-checking the reference's steps); the answer after the end tag goes wrong
less often the longer the path thought (each thinking line multiplies the error rate by
``decay``), so thinking longer helps, and a sample that stops early answers worse: what budget
forcing needs to show anything. A path that was forced to close (the end tag forced) or told
to go on (a continuation word such as "Wait") is continued from where it stands.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Generic, Protocol, TypeVar, cast

from branchwise.orchestrator.engines.code_book import Draws, RandomDraws

START, END = "<think>", "</think>"


class _Written(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def logprobs(self) -> tuple[float, ...]: ...


W = TypeVar("W", bound=_Written)
W_co = TypeVar("W_co", bound=_Written, covariant=True)


class RatedPolicy(Protocol[W_co]):
    """A policy whose per-step error rate can be set (the reference replay)."""

    error_rate: float

    def continue_text(self, prompt: str, rng: random.Random) -> W_co: ...

    def continue_drawn(self, prompt: str, draws: Draws) -> W_co: ...


class ThinkingPolicy(Generic[W]):
    """Reference replay wrapped in a thinking block of ``lines`` (min, max) lines."""

    def __init__(
        self, inner: RatedPolicy[W], *, lines: tuple[int, int] = (1, 6), decay: float = 0.7
    ) -> None:
        self.inner = inner
        self.lines = lines
        self.decay = decay
        self._base_rate = inner.error_rate

    def continue_text(self, prompt: str, rng: random.Random) -> W:
        return self.continue_drawn(prompt, RandomDraws(rng))

    def continue_drawn(self, prompt: str, draws: Draws) -> W:
        """The continuation with its choices (lines of thought, errors) made by ``draws``."""
        at = prompt.find(START)
        if at < 0:  # not yet opened: the model writes the start tag first
            head, thought, opened = prompt, "", False
        else:
            head, thought, opened = prompt[:at], prompt[at + len(START) :], True
        closed = thought.find(END)
        if closed >= 0:  # answering: the reference replay sees the prompt without thinking
            answer_so_far = thought[closed + len(END) :]
            lead = "" if answer_so_far else "\n"
            answer_so_far = answer_so_far.removeprefix("\n")
            return self._answer(head + answer_so_far, thought[:closed], lead, draws)
        done = [line for line in thought.split("\n") if line.strip()]
        # a thought cut mid-line (a continuation word such as "Wait") goes on for a line
        going_on = bool(thought.strip()) and not thought.endswith("\n")
        more = max(int(going_on), draws.integer(*self.lines) - len(done))
        # go on after the prompt's tag or a continuation word, on a line of its own
        opening = "\n" if opened and not thought.endswith("\n") else ""
        opening = opening if opened else START + "\n"
        body = "".join(f"Check step {len(done) + i + 1}: looks right.\n" for i in range(more))
        written = thought + opening + body
        prefix = opening + body + END
        answer = self._answer(head, written, "\n", draws)
        logprobs = (-0.05,) * len(prefix) + answer.logprobs  # sure of its checks
        return _rewritten(answer, prefix + answer.text, logprobs)

    def _answer(self, prompt: str, thought: str, lead: str, draws: Draws) -> W:
        lines = sum(1 for line in thought.split("\n") if line.strip())
        self.inner.error_rate = self._base_rate * self.decay**lines
        try:
            answer = self.inner.continue_drawn(prompt, draws)
        finally:
            self.inner.error_rate = self._base_rate
        if not lead:
            return answer
        logprobs = (-0.01,) * len(lead) + answer.logprobs
        return _rewritten(answer, lead + answer.text, logprobs)


def _rewritten(written: W, text: str, logprobs: tuple[float, ...]) -> W:
    # the inner policy's own (dataclass) type, with its text and logprobs replaced
    return cast(W, replace(cast(Any, written), text=text, logprobs=logprobs))

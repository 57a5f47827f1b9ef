"""What LLM scorers (judges, self-verification) spend on an engine, charged to the search
that asked for the scores.

A scorer is shared by every problem of a run, so it cannot know whose score it computes. The
search context names a sink around each call into a scorer (``charged_to``); every engine call
the scorer makes inside, in tasks it spawns too, goes straight to that sink (``charge``), so a
call that ends after the scorer returned (a sibling of a failed check) is still counted.
Outside such a block (a scorer used on its own) nothing is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class ScorerSpend:
    """One scorer engine call's tokens."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0


Sink = Callable[[ScorerSpend], None]

_sink: ContextVar[Sink | None] = ContextVar("branchwise_scorer_sink", default=None)


@contextmanager
def charged_to(sink: Sink) -> Iterator[None]:
    """Scorer engine calls started inside the block are charged to ``sink``."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def charge(*, prompt: int, generated: int, cached: int = 0) -> None:
    """Charge one scorer engine call to the current sink, if any."""
    sink = _sink.get()
    if sink is not None:
        sink(
            ScorerSpend(
                prompt_tokens=prompt, cached_prompt_tokens=cached, generated_tokens=generated
            )
        )

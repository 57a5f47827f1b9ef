"""What LLM scorers (judges, self-verification) spend on an engine, charged to the search
that asked for the scores.

A scorer is shared by every problem of a run, so it cannot know whose score it computes. The
search context opens a tally around each call into a scorer (``tallied``); the engine calls
the scorer makes inside, in tasks it spawns too, add to that tally (``charge``). Outside a
tally (a scorer used on its own) nothing is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class ScorerSpend:
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0


_current: ContextVar[ScorerSpend | None] = ContextVar("branchwise_scorer_spend", default=None)


@contextmanager
def tallied() -> Iterator[ScorerSpend]:
    """Count what scorer engine calls inside the block spend (nested blocks count apart)."""
    spend = ScorerSpend()
    token = _current.set(spend)
    try:
        yield spend
    finally:
        _current.reset(token)


def charge(*, prompt: int, generated: int, cached: int = 0) -> None:
    """Add one scorer engine call to the open tally, if any."""
    spend = _current.get()
    if spend is not None:
        spend.prompt_tokens += prompt
        spend.cached_prompt_tokens += cached
        spend.generated_tokens += generated
        spend.engine_calls += 1

"""The ledger: budgets (what a search may spend), usage (what it did spend), reservations.

Every spending passes through one :class:`Reservation`: generated tokens are held when a
request is admitted (``n * max_tokens``, plus its nodes and prompt tokens) and the unused part
is given back when it settles, so concurrent expansions can never overshoot the budget. A
reservation is a context manager: leaving its block without settling gives everything back
and, for an engine request, counts it as aborted. :class:`Ledger` is the only writer of
:class:`Usage`. Near the end of a budget, the order in which waiting requests are decided is
kept by an :class:`~branchwise.orchestrator.admission.AdmissionOrder`, which knows nothing of
budgets: the ledger decides, the order only says whose turn it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from branchwise.core.errors import BudgetExhausted
from branchwise.core.scorer_spend import ScorerSpend
from branchwise.orchestrator.admission import AdmissionOrder


class Budget(BaseModel):
    """Limits for one problem's search; None means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_generated_tokens: int | None = Field(None, ge=1, description="Sampled tokens.")
    max_prompt_tokens: int | None = Field(None, ge=1, description="Prompt tokens sent.")
    max_engine_calls: int | None = Field(None, ge=1, description="Generation requests.")
    max_scorer_calls: int | None = Field(None, ge=1, description="Nodes sent to scorers.")
    max_seconds: float | None = Field(None, gt=0, description="Wall-clock seconds.")
    max_nodes: int | None = Field(None, ge=1, description="Nodes in the search graph.")
    max_thinking_tokens: int | None = Field(
        None,
        ge=1,
        description="Per path: thinking tokens of a reasoning model; at the limit the end tag "
        "is forced and the path goes on to its answer (needs `reasoning`).",
    )
    min_thinking_tokens: int | None = Field(
        None,
        ge=1,
        description="Per path: an end tag written earlier is replaced by the recipe's "
        "`reasoning.continuation` word, so the model thinks on (needs `reasoning`).",
    )
    run_generated_tokens: int | None = Field(
        None,
        ge=1,
        description="The whole run's sampled tokens (not per problem): split over the "
        "problems by a probe of each (the recipe's `allocation`; orchestrator.run_allocation).",
    )

    @model_validator(mode="after")
    def _check_thinking(self) -> Budget:
        low, high = self.min_thinking_tokens, self.max_thinking_tokens
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"budget.min_thinking_tokens: {low} is above max_thinking_tokens {high}"
            )
        return self


@dataclass
class Usage:
    """Everything one search spent; every field but the scorer tokens is traceable to graph
    nodes (those are what LLM scorers spent on an engine to score them)."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0
    scorer_calls: int = 0
    scorer_cache_hits: int = 0
    scorer_prompt_tokens: int = 0
    """Prompt tokens LLM scorers (judges, self-verification) sent to an engine."""
    scorer_cached_prompt_tokens: int = 0
    scorer_generated_tokens: int = 0
    """Tokens LLM scorers generated (verdicts, rewritten checks); apart from generated_tokens,
    which the generation budget caps."""
    nodes: int = 0
    aborted_requests: int = 0
    seconds: float = 0.0
    thinking_tokens: int = 0
    """Generated tokens inside a reasoning model's thinking (part of generated_tokens)."""

    def add(self, other: Usage) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


ENGINE_USAGE_FIELDS = ("engine_calls", "prompt_tokens", "cached_prompt_tokens", "generated_tokens")
"""What is counted per named engine when a recipe has several (``Ledger.usage_record``)."""


class Reservation:
    """Budget held for one piece of work, from admission until it settles (exactly once).

    ``per_sample``: the max_tokens each of the request's samples may use. Use as ``with``:
    settle with what was used (:meth:`settle`); leaving the block unsettled gives everything
    back (:meth:`release`). ``engine_call``: it stands for an engine request (counted when
    held; an unsettled one counts as aborted). ``waitable``: the request finishes on its own,
    so the admission queue may wait for it (a stream, which ends only as it is read, is not).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        per_sample: int,
        tokens: int,
        nodes: int,
        prompt: int,
        engine_call: bool,
        waitable: bool,
        engine: str | None = None,
    ) -> None:
        self._ledger = ledger
        self.engine = engine
        self.per_sample = per_sample
        self.tokens = tokens
        self.nodes = nodes
        self.prompt = prompt
        self.engine_call = engine_call
        self.waitable = waitable
        self.settled = False

    def settle(
        self,
        *,
        generated: int = 0,
        prompt: int = 0,
        cached: int = 0,
        nodes: int = 0,
        aborted: bool = False,
    ) -> None:
        """Replace the reservation with what was used; ``aborted``: the request was cut off."""
        if self.settled:
            raise RuntimeError("a reservation settles once")
        self.settled = True  # first: a failure while settling must not settle again
        self._ledger.record(
            self, generated=generated, prompt=prompt, cached=cached, nodes=nodes, aborted=aborted
        )

    def release(self) -> None:
        """Give the whole reservation back unless it has settled (nothing was used)."""
        if not self.settled:
            self.settle(aborted=self.engine_call)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Ledger:
    """Usage and outstanding reservations against a :class:`Budget` for one search."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.usage = Usage()
        self._reserved_tokens = 0
        self._reserved_prompt = 0
        self._reserved_nodes = 0
        self._started = time.monotonic()
        self._order = AdmissionOrder()
        self.engine_usage: dict[str, dict[str, int]] = {}
        """Per named engine (recipes with several): its calls, prompt and generated tokens."""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return self.budget.max_seconds - self.elapsed

    def generated_tokens_left(self, count_reserved: bool = True) -> int | None:
        """Tokens still to sample; ``count_reserved=False``: as if nothing were in flight."""
        if self.budget.max_generated_tokens is None:
            return None
        held = self._reserved_tokens if count_reserved else 0
        return self.budget.max_generated_tokens - self.usage.generated_tokens - held

    @property
    def exhausted(self) -> bool:
        """True when no further generation request could be issued."""
        try:
            self.check_request(n=1, max_tokens=1, new_nodes=1)
        except BudgetExhausted:
            return True
        return False

    def check_request(
        self,
        *,
        n: int,
        max_tokens: int,
        new_nodes: int,
        prompt_tokens: int = 0,
        count_reserved: bool = True,
    ) -> int:
        """Raise if a request cannot start; return the max_tokens it may use per sample.

        ``count_reserved=False`` answers as if every request in flight had returned its
        unused reservation: what waiting for them could at best achieve.
        """
        b, u = self.budget, self.usage
        held = count_reserved
        if b.max_engine_calls is not None and u.engine_calls >= b.max_engine_calls:
            raise BudgetExhausted("engine call budget spent")
        if (
            b.max_nodes is not None
            and u.nodes + self._reserved_nodes * held + new_nodes > b.max_nodes
        ):
            raise BudgetExhausted("node budget spent")
        left_seconds = self.seconds_left()
        if left_seconds is not None and left_seconds <= 0:
            raise BudgetExhausted("time budget spent")
        if (
            b.max_prompt_tokens is not None
            and u.prompt_tokens + self._reserved_prompt * held + max(prompt_tokens, 1)
            > b.max_prompt_tokens
        ):
            raise BudgetExhausted("prompt token budget spent")
        left_tokens = self.generated_tokens_left(count_reserved)
        if left_tokens is None:
            return max_tokens
        per_sample = min(max_tokens, left_tokens // n)
        if per_sample < 1:
            raise BudgetExhausted("generated token budget spent")
        return per_sample

    async def admit(
        self,
        *,
        n: int,
        max_tokens: int,
        new_nodes: int,
        prompt_tokens: int,
        key: str,
        waitable: bool = True,
        engine: str | None = None,
    ) -> Reservation:
        """Reserve an engine request's budget; its ``per_sample`` is what each of its ``n``
        samples may use. Raises BudgetExhausted when it cannot start.

        While nobody waits, a request that fits in full is admitted at once. One that would be
        cut short or refused only because of reservations still in flight waits until no
        waitable request is in flight; from then on requests are decided one at a time, in
        node order of ``key``, never in the order their predecessors happened to finish (see
        ``admission``). ``waitable``: the request finishes on its own (a plain generation), so
        others may wait for it; a stream, which finishes only as its consumer reads it, must
        pass False. ``engine``: the named engine the request goes to, counted apart in
        :attr:`engine_usage` (None: not counted per engine).
        """

        def check(count_reserved: bool = True) -> int:
            return self.check_request(
                n=n,
                max_tokens=max_tokens,
                new_nodes=new_nodes,
                prompt_tokens=prompt_tokens,
                count_reserved=count_reserved,
            )

        order = self._order
        woken = False
        while True:
            if woken or not order.queued:
                try:
                    per_sample = check()
                except BudgetExhausted:
                    if order.in_flight == 0 or not _curable(check):
                        order.decided(woken)
                        raise
                else:
                    cut = per_sample < max_tokens
                    if not cut or order.in_flight == 0 or not _curable(check):
                        held = self.hold(
                            per_sample=per_sample,
                            tokens=per_sample * n,
                            nodes=new_nodes,
                            prompt=prompt_tokens,
                            waitable=waitable,
                            engine=engine,
                        )
                        order.decided(woken)
                        return held
            if woken:
                order.turn_unused()
            await order.wait_turn(key)
            woken = True

    def reserve_nodes(self, count: int) -> Reservation:
        """Hold ``count`` nodes that cost no generation (forced tokens); raise if they would
        pass the node budget."""
        b, u = self.budget, self.usage
        if b.max_nodes is not None and u.nodes + self._reserved_nodes + count > b.max_nodes:
            raise BudgetExhausted("node budget spent")
        return self.hold(per_sample=0, tokens=0, nodes=count, engine_call=False)

    def hold(
        self,
        *,
        per_sample: int,
        tokens: int,
        nodes: int = 0,
        prompt: int = 0,
        engine_call: bool = True,
        waitable: bool = False,
        engine: str | None = None,
    ) -> Reservation:
        """Hold budget already admitted, so concurrent requests cannot overshoot."""
        held = Reservation(
            self,
            per_sample=per_sample,
            tokens=tokens,
            nodes=nodes,
            prompt=prompt,
            engine_call=engine_call,
            waitable=waitable,
            engine=engine,
        )
        self._reserved_tokens += tokens
        self._reserved_nodes += nodes
        self._reserved_prompt += prompt
        self.usage.engine_calls += engine_call
        if engine is not None:
            self._engine_counts(engine)["engine_calls"] += engine_call
        if waitable:
            self._order.started()
        return held

    def record(
        self,
        held: Reservation,
        *,
        generated: int,
        prompt: int,
        cached: int,
        nodes: int,
        aborted: bool,
    ) -> None:
        """What a reservation used, in place of what it held (called by its ``settle``)."""
        self._reserved_tokens -= held.tokens
        self._reserved_nodes -= held.nodes
        self._reserved_prompt -= held.prompt
        self.usage.generated_tokens += generated
        self.usage.prompt_tokens += prompt
        self.usage.cached_prompt_tokens += cached
        self.usage.nodes += nodes
        self.usage.aborted_requests += aborted
        if held.engine is not None:
            counts = self._engine_counts(held.engine)
            counts["generated_tokens"] += generated
            counts["prompt_tokens"] += prompt
            counts["cached_prompt_tokens"] += cached
        if held.waitable:
            self._order.finished()
        else:
            self._order.wake()

    def check_scoring(self, count: int) -> None:
        """Raise if ``count`` more scorer calls would pass the budget."""
        b = self.budget
        if b.max_scorer_calls is not None and self.usage.scorer_calls + count > b.max_scorer_calls:
            raise BudgetExhausted("scorer call budget spent")

    def spend_scoring(self, count: int) -> None:
        """Count ``count`` nodes (or pairs) sent to a scorer; raise if that passes the budget."""
        self.check_scoring(count)
        self.usage.scorer_calls += count

    def count_thinking(self, count: int) -> None:
        """Count generated tokens that were thinking (already paid as generated tokens)."""
        self.usage.thinking_tokens += count

    def count_scorer_tokens(self, spend: ScorerSpend) -> None:
        """Count one LLM scorer engine call made for this search (reported, not capped)."""
        self.usage.scorer_prompt_tokens += spend.prompt_tokens
        self.usage.scorer_cached_prompt_tokens += spend.cached_prompt_tokens
        self.usage.scorer_generated_tokens += spend.generated_tokens

    def count_cache_hits(self, count: int) -> None:
        """Count scores served from the memo instead of a scorer."""
        self.usage.scorer_cache_hits += count

    def finish(self) -> Usage:
        self.usage.seconds = self.elapsed
        return self.usage

    def track_engine(self, engine: str) -> None:
        """Count ``engine``'s usage apart, and record it even if it is never called."""
        self._engine_counts(engine)

    def _engine_counts(self, engine: str) -> dict[str, int]:
        return self.engine_usage.setdefault(engine, dict.fromkeys(ENGINE_USAGE_FIELDS, 0))

    def usage_record(self) -> dict[str, float | int]:
        """The finished usage as a flat record, plus ``engines.NAME.FIELD`` for each named
        engine of a recipe with several (flat keys, so every reader that sums usage fields
        by name keeps working; a single-engine recipe's record is unchanged)."""
        record = self.finish().to_dict()
        for name, counts in sorted(self.engine_usage.items()):
            for key, value in counts.items():
                record[f"engines.{name}.{key}"] = value
        return record


def _curable(check: Callable[[bool], int]) -> bool:
    """True if the requests in flight returning their unused reservations could help."""
    try:
        best = check(False)
    except BudgetExhausted:
        return False
    try:
        return best > check(True)
    except BudgetExhausted:
        return True

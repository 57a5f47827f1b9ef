"""A run-level token budget, split over the problems by how hard a cheap probe finds them.

With ``budget.run_generated_tokens`` a recipe gives the whole run one budget of sampled
tokens, and this allocator decides each problem's share, in two phases:

1. **Probe.** Every problem draws ``allocation.probe_samples`` whole solutions (one request
   each, with token logprobs, so a strategy that weights by them can count them). Their
   agreement (the share of the most common answer) estimates the problem's difficulty: a
   problem whose probe agrees completely is most likely settled; one whose samples disagree
   is where more samples can change the vote.
2. **Allocate and search.** What the probes left of the run budget is split over the
   problems by ``allocation.rule``: ``agreement`` gives each a share proportional to
   ``1 - agreement`` (none to a unanimous probe), water-filled under a cap of ``max_share``
   times the even share; ``uniform`` gives every problem the even share (the baseline the
   claim is measured against). Each problem's strategy then runs on the same search tree, so
   the probe's samples vote with its own, with ``n`` set to the samples its share pays for
   (at the probe's mean tokens per sample; ``batch`` 1, so no sample is cut to fit) and its
   ledger capped at what the probe spent plus its share.

No overspending: the probes together may use at most the run budget (each is capped at an
even share of it), and every problem's ledger is capped at its probe's use plus its share,
the shares summing to at most what the probes left; the ledger admits no request past a
cap. Unused share is not passed on (a second pass would be a later refinement).

Following the compute-optimal scaling papers: Snell et al. 2024 ("Scaling LLM Test-Time
Compute Optimally can be More Effective than Scaling Model Parameters": allocate by a
difficulty estimate), Damani et al. 2024 ("Learning How Hard to Think: Input-Adaptive
Allocation of LM Computation"); the probe's agreement as the difficulty signal follows
adaptive self-consistency (Aggarwal et al. 2023). Cost: the probes (``probe_samples`` per
problem) come out of the same budget. Knobs: ``probe_samples``, ``rule``, ``max_share``.
Strategies: those drawing independent whole solutions with a sample count ``n``
(self_consistency, best_of_n, rpc); a recipe naming another is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node
from branchwise.core.problem import Problem
from branchwise.orchestrator.context import SearchContext
from branchwise.orchestrator.ledger import Budget, Ledger
from branchwise.orchestrator.results import ProblemResult
from branchwise.strategies.base import Strategy


class RunAllocationSpec(BaseModel):
    """How ``budget.run_generated_tokens`` is split over a run's problems."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_samples: int = Field(
        4, ge=1, description="Whole solutions per problem in the probe (their agreement "
        "estimates its difficulty; they are part of its search and of the budget)."
    )  # fmt: skip
    rule: Literal["agreement", "uniform"] = Field(
        "agreement",
        description="agreement: shares in proportion to 1 - the probe's agreement; uniform: "
        "an even share each (the baseline).",
    )
    max_share: float = Field(
        4.0, ge=1.0, description="A problem gets at most this many times the even share."
    )


class Searches(Protocol):
    """What the allocator needs of the runner: open a search, finish it, record a failure."""

    async def open_search(
        self, problem: Problem, ledger: Ledger
    ) -> tuple[Strategy[Any], SearchContext]: ...

    async def finish_search(
        self,
        problem: Problem,
        strategy: Strategy[Any],
        ctx: SearchContext,
        ledger: Ledger,
        *,
        search: bool = True,
    ) -> ProblemResult: ...

    def failed_result(
        self, problem: Problem, ledger: Ledger, ctx: SearchContext | None, exc: BaseException
    ) -> ProblemResult: ...


@dataclass
class Probed:
    """One problem after its probe."""

    problem: Problem
    ledger: Ledger
    strategy: Strategy[Any]
    ctx: SearchContext
    samples: list[Node]
    started: float
    agreement: float = 0.0


@dataclass
class RunBudgetReport:
    """What the run had and spent (``generated_tokens``), as the allocator saw it."""

    budget: int
    spent_before: int = 0
    probe: int = 0
    allocated: int = 0
    spent: int = 0
    problems: int = 0
    shares: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_generated_tokens": self.budget,
            "spent_before_resume": self.spent_before,
            "probe_tokens": self.probe,
            "allocated_tokens": self.allocated,
            "generated_tokens": self.spent,
            "unspent": self.budget - self.spent_before - self.spent,
            "problems": self.problems,
        }


def agreement(answers: Sequence[str | None]) -> float:
    """The share of samples giving the most common answer (unanswered ones never agree)."""
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    return max(counts.values(), default=0) / len(answers) if answers else 0.0


def split_tokens(weights: Sequence[float], tokens: int, cap: int) -> list[int]:
    """Integer shares of ``tokens`` in proportion to ``weights``, none above ``cap``
    (water-filling: what a capped share cannot take goes to the others); sum <= tokens."""
    shares = [0] * len(weights)
    open_ = [i for i, w in enumerate(weights) if w > 0]
    left = max(tokens, 0)
    while open_ and left > 0:
        total = sum(weights[i] for i in open_)
        offer = {i: int(left * weights[i] / total) for i in open_}
        capped = [i for i in open_ if shares[i] + offer[i] >= cap]
        if not capped:
            for i in open_:
                shares[i] += offer[i]
            break
        for i in capped:
            left -= cap - shares[i]
            shares[i] = cap
        open_ = [i for i in open_ if i not in capped]
    return shares


class RunAllocator:
    """Probes every problem, splits what is left of the run budget, runs the searches."""

    def __init__(
        self,
        spec: RunAllocationSpec,
        budget: Budget,
        *,
        max_tokens: int,
        concurrency: int,
        spent_before: int = 0,
    ) -> None:
        assert budget.run_generated_tokens is not None
        self.spec = spec
        self.budget = budget
        self.max_tokens = max_tokens
        self.slots = asyncio.Semaphore(concurrency)
        self.report = RunBudgetReport(budget.run_generated_tokens, spent_before=spent_before)

    async def stream(
        self,
        searches: Searches,
        problems: Sequence[Problem],
        claim: Callable[[Problem, int], bool] | None = None,
    ) -> AsyncIterator[ProblemResult]:
        """Results as the searches finish (failed probes first)."""
        todo = [p for i, p in enumerate(problems) if claim is None or claim(p, i)]
        self.report.problems = len(todo)
        if not todo:
            return
        left = self.report.budget - self.report.spent_before
        probe_cap = min(self.spec.probe_samples * self.max_tokens, left // len(todo))
        if self.budget.max_generated_tokens is not None:
            probe_cap = min(probe_cap, self.budget.max_generated_tokens)
        tasks = [asyncio.create_task(self._probe(searches, p, probe_cap)) for p in todo]
        running: list[asyncio.Task[ProblemResult]] = []
        try:
            probed: list[Probed] = []
            for outcome in await asyncio.gather(*tasks):
                if isinstance(outcome, ProblemResult):
                    yield outcome  # the probe failed
                else:
                    probed.append(outcome)
            shares = self._allocate(probed, left)
            running = [
                asyncio.create_task(self._search(searches, one, share))
                for one, share in zip(probed, shares, strict=True)
            ]
            for finished in asyncio.as_completed(running):
                result = await finished
                self.report.spent += int(result.usage.get("generated_tokens", 0))
                yield result
        finally:
            for task in [*tasks, *running]:
                task.cancel()
            await asyncio.gather(*tasks, *running, return_exceptions=True)

    async def _probe(
        self, searches: Searches, problem: Problem, cap: int
    ) -> Probed | ProblemResult:
        started = time.perf_counter()
        ledger = Ledger(self.budget.model_copy(update={"max_generated_tokens": max(cap, 1)}))
        ctx: SearchContext | None = None
        async with self.slots:
            try:
                strategy, ctx = await searches.open_search(problem, ledger)
                samples: list[Node] = []
                if cap >= 1:
                    # a request per sample, so a tight cap cuts the last sample, not all
                    drawn = await asyncio.gather(
                        *(ctx.sample(1, logprobs=0) for _ in range(self.spec.probe_samples)),
                        return_exceptions=True,
                    )
                    for outcome in drawn:
                        if isinstance(outcome, BaseException):
                            if not isinstance(outcome, BudgetExhausted):
                                raise outcome
                        else:
                            samples.extend(outcome)
                scorer = getattr(strategy.config, "scorer", None)
                if isinstance(scorer, str) and samples:
                    await ctx.score(samples, scorer)  # the strategy ranks them with its own
            except Exception as exc:
                return searches.failed_result(problem, ledger, ctx, exc)
        probed = Probed(problem, ledger, strategy, ctx, samples, started)
        probed.agreement = agreement([n.answer for n in samples] or [None])
        return probed

    def _allocate(self, probed: list[Probed], left: int) -> list[int]:
        probe = sum(p.ledger.usage.generated_tokens for p in probed)
        self.report.probe = probe
        remaining = left - probe
        if not probed or remaining <= 0:
            return [0] * len(probed)
        even = remaining // len(probed)
        if self.spec.rule == "uniform":
            shares = [even] * len(probed)
        else:
            weights = [1.0 - p.agreement for p in probed]
            shares = split_tokens(weights, remaining, int(self.spec.max_share * even))
        self.report.allocated = sum(shares)
        return shares

    async def _search(self, searches: Searches, one: Probed, share: int) -> ProblemResult:
        ledger, strategy = one.ledger, one.strategy
        used = ledger.usage.generated_tokens
        cap = used + share
        if self.budget.max_generated_tokens is not None:  # the per-problem limit still holds
            cap = min(cap, self.budget.max_generated_tokens)
        ledger.budget = ledger.budget.model_copy(update={"max_generated_tokens": max(cap, 1)})
        per_sample = max(1.0, used / max(len(one.samples), 1))
        extra = int(max(cap - used, 0) / per_sample)
        async with self.slots:
            try:
                if extra >= 1:
                    fields = type(strategy.config).model_fields
                    update: dict[str, Any] = {"n": extra}
                    if "batch" in fields:
                        update["batch"] = 1  # a sample at a time: none is cut to fit
                    strategy = type(strategy)(strategy.config.model_copy(update=update))
                result = await searches.finish_search(
                    one.problem, strategy, one.ctx, ledger, search=extra >= 1
                )
            except Exception as exc:
                result = searches.failed_result(one.problem, ledger, one.ctx, exc)
        result.detail["run_allocation"] = {
            "rule": self.spec.rule,
            "probe_samples": len(one.samples),
            "probe_agreement": round(one.agreement, 4),
            "probe_tokens": used,
            "share_tokens": share,
            "extra_samples": extra,
        }
        result.latency = round(time.perf_counter() - one.started, 4)
        return result

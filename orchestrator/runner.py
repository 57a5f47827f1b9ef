"""The orchestrator: runs a recipe's strategy over many problems on one shared engine.

Problems run concurrently up to ``recipe.concurrency``, so requests from many searches share
the engine's continuous batching, and start in order, each with a seat in the run's lending
pool (``orchestrator.lending``) through which strategies may pass on unspent budget; a
problem waiting for the pool gives its slot back, so no problem ever holds up another. A
problem that fails is recorded with its error and the rest go on; cancelling the run cancels
every search, which aborts their engine requests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeAlias

from branchwise.core.errors import BranchwiseError, BudgetExhausted, EngineError, RecipeError
from branchwise.core.problem import Problem
from branchwise.core.reasoning import ReasoningTags
from branchwise.core.scorers import SCORERS, Scorer, ScorerResources
from branchwise.orchestrator.context import SearchContext, SearchSettings
from branchwise.orchestrator.engines.base import (
    CodeBookEngine,
    Engine,
    LogprobEngine,
    StopTokenEngine,
    TokenEngine,
)
from branchwise.orchestrator.engines.config import arithmetic_engines, given_logprobs_refusal
from branchwise.orchestrator.generation import step_stop
from branchwise.orchestrator.ledger import Ledger
from branchwise.orchestrator.lending import LendingPool, PoolSeat
from branchwise.orchestrator.prompting import RenderedPrompt, render_prompt
from branchwise.orchestrator.recipe import Recipe
from branchwise.orchestrator.result_warnings import result_warnings
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.run_allocation import RunAllocator, RunBudgetReport
from branchwise.strategies.base import STRATEGIES, Strategy
from branchwise.verifiers.grading import grade

log = logging.getLogger(__name__)
_run_ids = itertools.count()
_STARTER_DIED = object()
"""Put on a run's queue when the task starting problems fails (a claim that cannot be
stored, say), so the loop reading the queue re-raises its error instead of waiting."""

SearchWatcher: TypeAlias = Callable[[SearchContext, Strategy[Any]], None]
"""Called once a problem's search starts, with its context and strategy, so a caller can
read the best answer so far (``strategy.anytime(ctx)``) while the search runs (the server
streams it). It must only read: the search owns both objects."""


def build_scorers(recipe: Recipe, engine: Engine | None) -> dict[str, Scorer[Any]]:
    resources = ScorerResources(engine=engine, base_dir=recipe.base_dir)
    scorers: dict[str, Scorer[Any]] = {}
    for config in recipe.scorers:
        scorers[config.alias] = SCORERS.get(config.kind)(config, resources)
    return scorers


class Orchestrator:
    """Owns an engine and the scorers of one recipe; use as ``async with``.

    ``engines``: the recipe's named engines already running (by name); by default those the
    recipe names are built here, and started and stopped with the orchestrator.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        engine: Engine | None = None,
        scorers: dict[str, Scorer[Any]] | None = None,
        engines: Mapping[str, Engine] | None = None,
    ) -> None:
        self.recipe = recipe
        self._owns_engine = engine is None
        self.engine: Engine = engine or recipe.engine.build(recipe.base_dir)
        self._owns_engines = engines is None
        self.engines: dict[str, Engine] = (
            dict(engines)
            if engines is not None
            else {name: cfg.build(recipe.base_dir) for name, cfg in recipe.engines.items()}
        )
        missing = sorted(set(recipe.engines) - set(self.engines))
        if missing:
            raise RecipeError(f"engines: {missing} named by the recipe but not passed in")
        strategy = STRATEGIES.get(recipe.strategy.name)
        if strategy.needs_given_logprobs and not isinstance(self.engine, LogprobEngine):
            raise RecipeError(given_logprobs_refusal(recipe.strategy.name, self.engine.name))
        if strategy.needs_token_engine and not isinstance(self.engine, TokenEngine):
            # the recipe's engine kind was checked when it was validated; this one was passed in
            raise RecipeError(
                f"strategy {recipe.strategy.name!r} forces tokens onto paths (ctx.extend), "
                f"which needs a TokenEngine (decode, eos_token_id); engine "
                f"{self.engine.name!r} is not one"
            )
        if recipe.sampling.method == "arithmetic" and not isinstance(self.engine, CodeBookEngine):
            raise RecipeError(
                f"sampling.method: arithmetic decodes each sample from a code point, which "
                f"engine {self.engine.name!r} cannot (engines that can: "
                f"{', '.join(arithmetic_engines())})"
            )
        self.scorers = scorers if scorers is not None else build_scorers(recipe, self.engine)
        self.run_id = f"bw{next(_run_ids)}"
        self._tags: ReasoningTags | None = None
        self.run_budget: RunBudgetReport | None = None
        """The run-level budget's report (``budget.run_generated_tokens``), once a run used it."""

    async def _reasoning_tags(self) -> ReasoningTags | None:
        """The recipe's reasoning format as the engine's token ids, resolved once."""
        fmt = self.recipe.reasoning
        if fmt is None or self._tags is not None:
            return self._tags
        special = await self.engine.tokenize("")  # e.g. a BOS the tokenizer always adds

        async def ids(text: str) -> tuple[int, ...]:
            found = await self.engine.tokenize(text)
            return found[len(special) :] if found[: len(special)] == special else found

        self._tags = ReasoningTags(
            format=fmt,
            end_ids=await ids(fmt.end),
            forced_end_ids=await ids(fmt.forced_end_text),
            continuation_ids=await ids(fmt.continuation),
        )
        return self._tags

    async def __aenter__(self) -> Self:
        if self._owns_engine:
            await self.engine.__aenter__()
        started: list[Engine] = []
        try:
            await self._prepare_stop_tokens()
            for named in self.engines.values() if self._owns_engines else ():
                await named.__aenter__()
                started.append(named)
            if self.engines:
                await self._check_shared_tokenizer()
        except BaseException as exc:
            for named in reversed(started):
                await named.__aexit__(type(exc), exc, exc.__traceback__)
            if self._owns_engine:
                await self.engine.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def _prepare_stop_tokens(self) -> None:
        """The engine finds the recipe's stop tokens now (a large vocabulary takes ~0.5 s),
        so the first search does not wait for them."""
        if not isinstance(self.engine, StopTokenEngine):
            return
        sampling, delimiter = self.recipe.sampling, self.recipe.step_delimiter
        for stop in dict.fromkeys((step_stop(delimiter, sampling.stop), tuple(sampling.stop))):
            if not stop:
                continue
            try:
                await self.engine.prepare_stop_tokens(stop)
            except EngineError:  # e.g. an engine passed in not started: its requests will say
                return

    async def _check_shared_tokenizer(self) -> None:
        """Named engines extend the same token ids as the recipe's engine: refuse one whose
        tokenizer disagrees on a probe (a path's ids would mean other text there)."""
        probe = "Step 1: 12 + 30 = 42.\n\nThe answer is \\boxed{42}."
        ids = await self.engine.tokenize(probe)
        for name, named in self.engines.items():
            if await named.tokenize(probe) != ids:
                raise RecipeError(
                    f"engines.{name}: tokenizes text differently from the recipe's engine; "
                    "named engines must share its tokenizer (same vocabulary and ids)"
                )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for scorer in self.scorers.values():
                await scorer.aclose()
        finally:
            try:
                if self._owns_engines:
                    for named in reversed(list(self.engines.values())):
                        await named.__aexit__(exc_type, exc, tb)
            finally:
                if self._owns_engine:
                    await self.engine.__aexit__(exc_type, exc, tb)

    async def solve(
        self,
        problem: Problem,
        *,
        seat: PoolSeat | None = None,
        prompt: RenderedPrompt | None = None,
        watch: SearchWatcher | None = None,
    ) -> ProblemResult:
        """Search one problem; errors become a failed result, never an exception.

        ``seat``: the problem's place in its run's lending pool; it is closed when the search
        ends, however it ends, so later problems never wait for it in vain.
        ``prompt``: the prompt already rendered (a whole conversation, say); by default the
        recipe's ``prompt`` section renders ``problem.question``.
        ``watch``: see :data:`SearchWatcher`.
        """
        result: ProblemResult | None = None
        started = time.perf_counter()
        try:
            result = await self._solve(problem, seat, prompt, watch)
            result.latency = round(time.perf_counter() - started, 4)
            result.warnings = result_warnings(result, self.recipe)
            return result
        finally:
            if seat is not None:
                seat.close()
                if result is not None and (seat.lent or seat.borrowed):
                    result.lending = seat.ledger()

    async def _solve(
        self,
        problem: Problem,
        seat: PoolSeat | None,
        prompt: RenderedPrompt | None,
        watch: SearchWatcher | None,
    ) -> ProblemResult:
        ledger = Ledger(self.recipe.budget)
        ctx: SearchContext | None = None
        try:
            strategy, ctx = await self.open_search(problem, ledger, seat=seat, prompt=prompt)
            if watch is not None:
                watch(ctx, strategy)
            return await self.finish_search(problem, strategy, ctx, ledger)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the run itself is being cancelled
            # a stray cancellation inside the search (not of this task) is a failure
            log.warning("problem %s failed: cancelled inside the search", problem.id)
            return self.failed_result(problem, ledger, ctx, exc)
        except Exception as exc:
            return self.failed_result(problem, ledger, ctx, exc)

    async def open_search(
        self,
        problem: Problem,
        ledger: Ledger,
        *,
        seat: PoolSeat | None = None,
        prompt: RenderedPrompt | None = None,
    ) -> tuple[Strategy[Any], SearchContext]:
        """The recipe's strategy and a fresh search context for ``problem`` on ``ledger``."""
        if prompt is None:
            prompt = await render_prompt(
                self.recipe.prompt, problem.question, self.engine, self.recipe.base_dir
            )
        strategy = STRATEGIES.get(self.recipe.strategy.name)(self.recipe.strategy)
        ctx = SearchContext(
            problem=problem,
            prompt=prompt.text,
            prompt_token_ids=prompt.token_ids,
            settings=SearchSettings(
                engine=self.engine,
                sampling=self.recipe.sampling,
                step_delimiter=self.recipe.step_delimiter,
                answer_spec=self.recipe.answer,
                seed=self.recipe.seed,
                scorers=self.scorers,
                run_id=self.run_id,
                aggregation=self.recipe.aggregation(),
                reasoning=await self._reasoning_tags(),
                prompt=self.recipe.prompt,
                base_dir=self.recipe.base_dir,
                engines=self.engines,
            ),
            ledger=ledger,
            pool=seat,
        )
        return strategy, ctx

    async def finish_search(
        self,
        problem: Problem,
        strategy: Strategy[Any],
        ctx: SearchContext,
        ledger: Ledger,
        *,
        search: bool = True,
    ) -> ProblemResult:
        """Run ``strategy`` on ``ctx`` (``search=False``: only pick from the tree as it is)
        and grade its answer; the result carries the ledger's usage and the graph."""
        if not search:
            outcome = strategy.select(ctx)
        else:
            try:
                outcome = await strategy.search(ctx)
            except BudgetExhausted:
                outcome = strategy.anytime(ctx)
        correct = None
        if problem.reference is not None:
            correct = grade(outcome.answer, problem.reference, self.recipe.grading)
        return ProblemResult(
            problem_id=problem.id,
            answer=outcome.answer,
            node_id=outcome.node_id,
            reference=problem.reference,
            correct=correct,
            usage=ledger.usage_record(),
            detail=outcome.detail,
            graph=ctx.graph,
        )

    def failed_result(
        self,
        problem: Problem,
        ledger: Ledger,
        ctx: SearchContext | None,
        exc: BaseException,
    ) -> ProblemResult:
        """A failed problem's result: its error, what it spent and its graph so far."""
        if not isinstance(exc, asyncio.CancelledError):
            log.warning("problem %s failed: %s", problem.id, exc)
        return ProblemResult(
            problem_id=problem.id,
            answer=None,
            reference=problem.reference,
            usage=ledger.usage_record(),
            error=f"{type(exc).__name__}: {exc}",
            graph=ctx.graph if ctx is not None else None,
        )

    async def stream(
        self,
        problems: Iterable[Problem],
        *,
        finished: Mapping[str, Mapping[str, int]] | None = None,
        claim: Callable[[Problem, int], bool] | None = None,
        spent_before: int = 0,
    ) -> AsyncIterator[ProblemResult]:
        """Yield results as problems finish, with at most ``concurrency`` searching at once.

        Problems start in order as slots free up. A problem waiting for the lending pass
        (``orchestrator.lending``) gives its slot back meanwhile, so it never holds up later
        problems. ``finished``: problems of the list already solved by an earlier run of this
        recipe, by id, with what they lent and borrowed then (``ResultStore.lending``). They
        are not run again but keep their seats in the lending pool, so a resumed run gives
        every other problem the share an uninterrupted run would have.

        ``claim(problem, index)``: asked just before a problem starts (a results store's
        claim); False means another writer has it, and it is skipped like a finished one.

        With ``budget.run_generated_tokens`` the run-level allocator runs the problems
        (``orchestrator.run_allocation``: a probe of each, then shares of the budget; no
        lending); ``spent_before``: tokens the ``finished`` problems spent of it.
        """
        finished = finished or {}
        todo = list(problems)
        if self.recipe.budget.run_generated_tokens is not None:
            async for result in self._stream_run_budget(todo, finished, claim, spent_before):
                yield result
            return
        queue: asyncio.Queue[ProblemResult | object | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self.recipe.concurrency)
        pool = LendingPool(slots)
        tasks: set[asyncio.Task[None]] = set()

        async def run_one(seat: PoolSeat, problem: Problem) -> None:
            try:
                result = await self.solve(problem, seat=seat)
            except asyncio.CancelledError:
                # always answer the queue, or the loop below would wait forever
                result = ProblemResult(
                    problem.id,
                    None,
                    reference=problem.reference,
                    error="CancelledError: the run was cancelled",
                )
                queue.put_nowait(result)
                raise
            finally:
                seat.release_slot()
            queue.put_nowait(result)

        async def start_in_order() -> None:
            for index, problem in enumerate(todo):
                seat = pool.seat(index)
                earlier = finished.get(problem.id)
                if earlier is not None:
                    seat.restore_exchange(earlier)
                    continue
                await slots.acquire()
                if claim is not None and not claim(problem, index):
                    slots.release()
                    seat.restore_exchange({})
                    queue.put_nowait(None)  # one queue item per problem not finished
                    continue
                seat.holds_slot = True
                task = asyncio.create_task(run_one(seat, problem), name=f"problem:{problem.id}")
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        def wake_on_failure(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                queue.put_nowait(_STARTER_DIED)

        starter = asyncio.create_task(start_in_order(), name="problems:start")
        starter.add_done_callback(wake_on_failure)
        try:
            for _ in range(sum(p.id not in finished for p in todo)):
                item = await queue.get()
                if item is _STARTER_DIED:
                    await starter  # raises the error that stopped it
                if isinstance(item, ProblemResult):
                    yield item
            await starter  # done by now; surfaces an error it may have met
        finally:
            for task in [starter, *tasks]:
                task.cancel()
            await asyncio.gather(starter, *tasks, return_exceptions=True)

    async def _stream_run_budget(
        self,
        todo: list[Problem],
        finished: Mapping[str, Mapping[str, int]],
        claim: Callable[[Problem, int], bool] | None,
        spent_before: int,
    ) -> AsyncIterator[ProblemResult]:
        allocator = RunAllocator(
            self.recipe.allocation,
            self.recipe.budget,
            max_tokens=self.recipe.sampling.max_tokens,
            concurrency=self.recipe.concurrency,
            spent_before=spent_before,
        )
        self.run_budget = allocator.report
        index = {p.id: i for i, p in enumerate(todo)}
        fresh = [p for p in todo if p.id not in finished]
        claimed = None if claim is None else (lambda p, _i: claim(p, index[p.id]))
        async for result in allocator.stream(self, fresh, claimed):
            result.warnings = result_warnings(result, self.recipe)
            yield result

    async def run(self, problems: Sequence[Problem]) -> list[ProblemResult]:
        """All results, in the order of ``problems``."""
        ids = [p.id for p in problems]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise BranchwiseError(f"duplicate problem ids: {dupes[:5]}")
        by_id = {r.problem_id: r async for r in self.stream(problems)}
        return [by_id[p.id] for p in problems]

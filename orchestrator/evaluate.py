"""``branchwise eval``: run a recipe over problems into a results store, with a progress bar.

The engine's own log lines (vLLM prints dozens, from this process and from its engine-core
processes) go to ``engine.log`` beside the store: file descriptors 1 and 2 are pointed at the
log while the engine lives, and Branchwise's own output goes to a copy of the terminal's
descriptors (:class:`Console`). A misconfiguration that makes every score of a scorer fail, or
leaves no path with an answer, is said once, in words, the first time it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from branchwise.core.errors import StoreError
from branchwise.core.problem import Problem
from branchwise.orchestrator.engine_log import fds_to_file
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.metrics import candidates_of, subset_answers
from branchwise.orchestrator.recipe import Recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.store import DatasetIdentity, ResultStore

HEARTBEAT_SECONDS = 10.0


@dataclass
class Console:
    """Where Branchwise's own output goes (the terminal, even while fds 1/2 go to a log)."""

    out: TextIO
    err: TextIO


@contextlib.contextmanager
def engine_output_to(log_path: Path | None) -> Iterator[Console]:
    """Send fds 1 and 2 (and child processes') to ``log_path``; yield the terminal's streams."""
    if log_path is None:
        yield Console(sys.stdout, sys.stderr)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with fds_to_file(log_path) as saved:
        console = Console(
            os.fdopen(os.dup(saved[0]), "w", buffering=1), os.fdopen(os.dup(saved[1]), "w")
        )
        try:
            yield console
        finally:
            console.out.close()
            console.err.close()


@dataclass
class Diagnosis:
    """Problems worth one sentence each, said the first time they show and counted after."""

    console: Console
    said: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def note(self, key: str, message: str, *, bar: tqdm[Any] | None = None) -> None:
        if key not in self.said:
            self.first[key] = message
            line = f"warning: {message}"
            if bar is not None:
                bar.write(line, file=self.console.err)
            else:
                print(line, file=self.console.err)
        self.said[key] = self.said.get(key, 0) + 1

    def check(self, result: ProblemResult, recipe: Recipe, bar: tqdm[Any] | None) -> None:
        if result.error:
            kind = result.error.split(":", 1)[0]
            self.note(
                f"error:{kind}",
                f"problem {result.problem_id} failed: {result.error} (later problems that "
                "fail the same way are counted in the summary, not repeated)",
                bar=bar,
            )
        for warning in result.warnings:
            self.note(warning.key, warning.message, bar=bar)


@dataclass
class EvalOutcome:
    """How one store's run went: what ran now and what the store holds for these problems."""

    folder: Path
    ran: int
    records: list[dict[str, Any]]
    diagnosis: Diagnosis
    elsewhere: int = 0
    """Problems of the run another writer of the store is still running."""


async def evaluate(
    recipe: Recipe,
    problems: list[Problem],
    store: ResultStore,
    dataset: DatasetIdentity,
    console: Console,
    *,
    engine: Engine | None = None,
    with_graph: bool = False,
    quiet: bool = False,
    lines: bool = False,
) -> EvalOutcome:
    """Run the problems the store does not hold yet; return the store's records of them."""
    store.begin_run(
        recipe=recipe.model_dump(mode="json"), fingerprint=recipe.fingerprint(), dataset=dataset
    )
    store.check_questions(problems)
    if recipe.budget.run_generated_tokens is not None:
        _refuse_a_second_run_budget(store)
    done = store.done_ids()
    finished = {p.id: store.lending(p.id) for p in problems if p.id in done}
    spent_before = (
        _spent(store, {p.id for p in problems}) if recipe.budget.run_generated_tokens else 0
    )
    diagnosis = Diagnosis(console)
    ran = 0
    if finished and not quiet:
        print(f"resuming: {len(finished)} problems already in {store.folder}", file=console.out)
    if len(finished) < len(problems):
        ran = await _run(
            recipe,
            problems,
            finished,
            store,
            console,
            diagnosis,
            spent_before=spent_before,
            engine=engine,
            with_graph=with_graph,
            quiet=quiet,
            lines=lines,
        )
    wanted = {p.id for p in problems}
    records = [r for r in store.records() if r["problem_id"] in wanted]
    elsewhere = len(wanted & store.claimed_elsewhere())
    return EvalOutcome(store.folder, ran, records, diagnosis, elsewhere)


async def _run(
    recipe: Recipe,
    problems: list[Problem],
    finished: dict[str, dict[str, int]],
    store: ResultStore,
    console: Console,
    diagnosis: Diagnosis,
    *,
    spent_before: int = 0,
    engine: Engine | None,
    with_graph: bool,
    quiet: bool,
    lines: bool,
) -> int:
    todo = len(problems) - len(finished)
    bar: tqdm[Any] = tqdm(
        total=todo, file=console.err, disable=quiet or None, unit="problem", dynamic_ncols=True
    )
    started = time.monotonic()
    correct = graded = tokens = ran = 0

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            store.heartbeat()

    heart = asyncio.create_task(beat(), name="store:heartbeat")
    try:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            stream = orchestrator.stream(
                problems, finished=finished, claim=store.claim, spent_before=spent_before
            )
            async for result in stream:
                cands = candidates_of(result.graph, result.reference, recipe.grading)
                subsets = subset_answers(result.graph, recipe, result.reference)
                stored = store.finish(
                    result, candidates=cands, subsets=subsets, with_graph=with_graph
                )
                if not stored:
                    continue  # another writer stored it first
                ran += 1
                tokens += int(result.usage.get("generated_tokens", 0))
                if result.reference is not None:
                    graded += 1
                    correct += bool(result.correct)
                diagnosis.check(result, recipe, bar if not bar.disable else None)
                if lines and not quiet:
                    bar.write(_line(result), file=console.out)
                elapsed = max(time.monotonic() - started, 1e-9)
                bar.set_postfix(
                    acc=f"{correct / graded:.3f}" if graded else "-",
                    tok_s=f"{tokens / elapsed:.0f}",
                    refresh=False,
                )
                bar.update(1)
            if orchestrator.run_budget is not None and not quiet:
                report = orchestrator.run_budget.to_dict()
                bar.write(
                    f"run budget: {report['generated_tokens']} of "
                    f"{report['run_generated_tokens'] - report['spent_before_resume']} tokens "
                    f"spent ({report['probe_tokens']} in the probes)",
                    file=console.err,
                )
    except BaseException:
        # give back unfinished claims; when the store itself is failing, its first error is
        # the one to report, and a dead writer's claims go stale by themselves
        with contextlib.suppress(StoreError):
            store.release()
        raise
    finally:
        heart.cancel()
        bar.close()
        # collected, so a failed heartbeat is never printed later as an unretrieved error
        (beat_outcome,) = await asyncio.gather(heart, return_exceptions=True)
    if isinstance(beat_outcome, StoreError):
        raise beat_outcome  # the store failed between results (claims and results went on)
    return ran


def _refuse_a_second_run_budget(store: ResultStore) -> None:
    """One process splits a run-level budget: a second writer would spend all of it again."""
    running = store.claimed_elsewhere()
    if running:
        raise StoreError(
            f"{store.folder}: another process is running {len(running)} of its problems under "
            "budget.run_generated_tokens, which one process splits (two would each spend the "
            "whole budget); wait for it to finish, then rerun to resume"
        )


def _spent(store: ResultStore, wanted: set[str]) -> int:
    """Generated tokens earlier runs of these problems spent (finished or failed: a run
    budget counts both)."""
    return sum(
        int(r["usage"].get("generated_tokens", 0))
        for r in store.records()
        if r["problem_id"] in wanted
    )


def _line(result: ProblemResult) -> str:
    if result.error:
        return f"{result.problem_id}: FAILED {result.error}"
    mark = {True: "correct", False: "wrong", None: ""}[result.correct]
    ref = f" (reference {result.reference}, {mark})" if result.reference is not None else ""
    tokens = result.usage.get("generated_tokens", 0)
    return f"{result.problem_id}: answer={result.answer}{ref} generated_tokens={tokens}"

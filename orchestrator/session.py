"""A session for notebooks and scripts: one engine (and its reward models) up across calls.

``search()`` starts and stops an engine per call (seconds on the toy model, minutes on a 7B).
A :class:`Session` starts it once and keeps it until ``close()``, the end of a ``with`` block,
or the interpreter's exit. The engine lives on the session's own event loop, in a daemon
thread, so the same object serves sync calls (``session.search(q)``, ``session.map(qs)``,
from a script or a notebook cell whose loop is already running) and async ones
(``await session.asearch(q)``, ``await session.amap(qs)``, from any loop): this is the one
bridge between sync callers and the async core. The engine's own output goes to a file while
it starts (``log_path``; see ``orchestrator.engine_log``).
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import threading
import weakref
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from branchwise.core.errors import BranchwiseError
from branchwise.core.problem import Problem
from branchwise.orchestrator.engine_log import default_log_path, engine_output_to_file, uses_vllm
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.recipe import Recipe, load_recipe
from branchwise.orchestrator.result_warnings import log_warnings
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator

log = logging.getLogger("branchwise")
T = TypeVar("T")
_ids = itertools.count()


def as_recipe(recipe: Recipe | str | Path) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def as_problems(items: Sequence[Problem | str]) -> list[Problem]:
    """Problems from problems or question strings (ids ``q0``, ``q1``, ... for strings)."""
    return [
        p if isinstance(p, Problem) else Problem(id=f"q{i}", question=p)
        for i, p in enumerate(items)
    ]


class Session:
    """One recipe's engine and scorers, started once, searched many times.

    ``engine``: an engine you own (it is used, never started or stopped here).
    ``engine_log``: where the engine's start-up output goes; ``"auto"`` (the default) is a
    file in the temp folder when the recipe starts vLLM, ``None`` lets it through.
    """

    def __init__(
        self,
        recipe: Recipe | str | Path,
        *,
        engine: Engine | None = None,
        engine_log: Path | str | Literal["auto"] | None = "auto",
    ) -> None:
        self.recipe = as_recipe(recipe)
        self._engine = engine
        if engine_log == "auto":
            self.log_path = default_log_path() if uses_vllm(self.recipe) else None
        else:
            self.log_path = Path(engine_log) if engine_log is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._orchestrator: Orchestrator | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._name = f"session{next(_ids)}"

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the engine now (the first search does it otherwise); returns the session."""
        with self._lock:
            if self._closed:
                raise BranchwiseError("this session is closed; open a new Session")
            if self._orchestrator is not None:
                return self
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name=f"branchwise:{self._name}", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
            try:
                self._orchestrator = self._wait(self._open())
            except BaseException:
                self._stop_loop()
                raise
            _OPEN.add(self)
        if self.log_path is not None:
            log.info("engine log: %s", self.log_path)
        return self

    async def _open(self) -> Orchestrator:
        with engine_output_to_file(self.log_path):
            orchestrator = Orchestrator(self.recipe, engine=self._engine)
            await orchestrator.__aenter__()
        return orchestrator

    def close(self) -> None:
        """Stop the engine (aborting what is in flight) and the session's loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            orchestrator, self._orchestrator = self._orchestrator, None
            if orchestrator is not None:
                try:
                    self._wait(orchestrator.__aexit__(None, None, None))
                finally:
                    self._stop_loop()
            _OPEN.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # searching ---------------------------------------------------------------------------

    def search(self, problem: Problem | str) -> ProblemResult:
        """Search one problem (a Problem or a question) and wait for its result."""
        (result,) = self.map([problem])
        return result

    def map(self, problems: Sequence[Problem | str]) -> list[ProblemResult]:
        """Search many problems concurrently on the session's engine; results in input order."""
        self.start()
        return self._wait(self._run(problems))

    async def asearch(self, problem: Problem | str) -> ProblemResult:
        """:meth:`search` for async code (any event loop)."""
        (result,) = await self.amap([problem])
        return result

    async def amap(self, problems: Sequence[Problem | str]) -> list[ProblemResult]:
        """:meth:`map` for async code (any event loop)."""
        await asyncio.to_thread(self.start)
        return await asyncio.wrap_future(self._submit(self._run(problems)))

    async def _run(self, problems: Sequence[Problem | str]) -> list[ProblemResult]:
        orchestrator = self._orchestrator
        if orchestrator is None:
            raise BranchwiseError("this session is closed; open a new Session")
        results = await orchestrator.run(as_problems(problems))
        log_warnings(results, log)
        return results

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        loop = self._loop
        if loop is None:
            coro.close()
            raise BranchwiseError("this session is closed; open a new Session")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is threading.current_thread():
            coro.close()
            raise BranchwiseError("a sync Session call from inside its own loop; use asearch/amap")
        return self._submit(coro).result()


_OPEN: weakref.WeakSet[Session] = weakref.WeakSet()


@atexit.register
def _close_open_sessions() -> None:
    """Sessions left open stop their engines at exit (no orphaned engine processes)."""
    for session in list(_OPEN):
        try:
            session.close()
        except Exception as exc:  # exiting anyway: say it, never raise from atexit
            log.warning("closing %s at exit failed: %s", session._name, exc)

"""Streaming one child of a node: partial completions as tokens arrive, abort on demand.

Token-level strategies (DeepConf online, first-finish, entropy-adaptive branching) watch a
sample while it is written and stop it early. :class:`NodeStream` is the handle they get from
:meth:`SearchContext.stream_expand`; whatever happens inside its ``async with`` block, the
child is recorded in the graph on exit and every token the engine reported is accounted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Self

from branchwise.core.errors import BudgetExhausted, EngineError, EngineTimeout
from branchwise.core.graph import Node
from branchwise.orchestrator.engines.base import Engine, StreamingEngine, TokenEngine
from branchwise.orchestrator.engines.types import Completion, GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from branchwise.orchestrator.budget import Reservation
    from branchwise.orchestrator.context import SearchContext


class NodeStream:
    """A child of ``parent`` being generated token by token (one sample, ``n=1``).

    Use as ``async with ctx.stream_expand(node) as stream:`` then ``async for partial in
    stream``; each partial is the cumulative :class:`Completion` so far (its
    ``finish_reason`` is ``"abort"`` until the last one). Leaving the block before the engine
    finishes aborts the request. On exit the child is added to the graph: a finished one as
    :meth:`SearchContext.expand` would add it, an unfinished one with the tokens seen so far,
    ``finish_reason="abort"`` and status ``"aborted"``; :attr:`node` holds it. Those partial
    tokens count as generated, so usage always equals the tokens in the graph.

    A strategy that stops reading by its own decision calls :meth:`cut` first: the child is
    then recorded as aborted even if the engine had already finished it (a fast engine may
    deliver the rest of a sample in the same chunk), so whether it was cut does not depend on
    that race; how many tokens it holds (and counts as generated) still may.
    """

    def __init__(
        self,
        ctx: SearchContext,
        parent: Node,
        child_id: str,
        request: GenerationRequest,
        one_step: bool,
    ) -> None:
        self._ctx = ctx
        self.parent = parent
        self.child_id = child_id
        self.request = request
        self._one_step = one_step
        self._held: Reservation | None = None
        self._iterator: AsyncIterator[GenerationResult] | None = None
        self._last: GenerationResult | None = None
        self._cut = False
        self.node: Node | None = None
        """The recorded child, set when the ``async with`` block exits."""

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def cut(self) -> None:
        """Declare that the strategy stops this sample here, whatever the engine has done."""
        self._cut = True

    @property
    def aborted(self) -> bool:
        """True once recorded as aborted (stopped before the engine finished)."""
        return self.node is not None and self.node.finish_reason == "abort"

    async def __aenter__(self) -> Self:
        budget = self._ctx.budget
        spec = self.request.sampling
        prompt = len(self.request.prompt_token_ids)
        # A stream ends only as its consumer reads it, so nothing may wait for it (waitable).
        self._held = await budget.admit(
            n=1,
            max_tokens=spec.max_tokens,
            new_nodes=1,
            prompt_tokens=prompt,
            key=self.child_id,
            waitable=False,
        )
        try:
            self.request = replace(
                self.request,
                sampling=spec.model_copy(update={"max_tokens": self._held.per_sample}),
            )
            self._iterator = _open(self._ctx.engine, self.request)
        except BaseException:
            self._held.release()  # no __aexit__ follows a failed __aenter__
            raise
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Completion:
        if self._iterator is None:
            raise RuntimeError("use NodeStream inside `async with`")
        seconds = self._ctx.budget.seconds_left()
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                result = await anext(self._iterator)
        except TimeoutError as exc:
            if not deadline.expired():
                raise EngineTimeout(
                    f"engine timed out streaming {self.child_id}: {exc}",
                    problem_id=self._ctx.problem.id,
                    node_id=self.child_id,
                ) from exc
            raise BudgetExhausted(
                "time budget spent during generation",
                problem_id=self._ctx.problem.id,
                node_id=self.child_id,
            ) from None
        except EngineError as exc:
            exc.problem_id = exc.problem_id or self._ctx.problem.id
            exc.node_id = exc.node_id or self.child_id
            raise
        if not result.completions:
            raise EngineError(
                "engine streamed a result without completions",
                problem_id=self._ctx.problem.id,
                node_id=self.child_id,
            )
        self._last = result
        return result.completions[0]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            aclose = getattr(self._iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # aborts the request if the engine had not finished
            if not isinstance(exc, asyncio.CancelledError):
                await self._decode_partial()
        finally:
            if self._held is not None:
                with self._held:  # settled by _record; given back if recording fails
                    self._record(self._held, exc)

    async def _decode_partial(self) -> None:
        """Give a sample stopped mid-stream the decode of its tokens as its text.

        Engines stream their own running text, which can lack a trailing incomplete
        character; a node's text is the decode of its token ids everywhere else.
        """
        last = self._last
        if last is None or not isinstance(self._ctx.engine, TokenEngine):
            return
        completion = last.completions[0]
        if completion.finish_reason in ("stop", "length") and not self._cut:
            return  # finished: the engine already decoded all of it
        text = await self._ctx.engine.decode(completion.token_ids)
        self._last = replace(last, completions=(replace(completion, text=text),))

    def _record(self, held: Reservation, exc: BaseException | None) -> None:
        ctx, last = self._ctx, self._last
        completion = last.completions[0] if last is not None else None
        finished = (
            completion is not None
            and completion.finish_reason in ("stop", "length")
            and not self._cut
        )
        held.settle(
            generated=len(completion.token_ids) if completion is not None else 0,
            prompt=last.prompt_tokens if last is not None else 0,
            cached=last.cached_prompt_tokens if last is not None else 0,
            nodes=1,
            aborted=not finished,
        )
        if finished:
            assert completion is not None
            self.node = ctx.add_completion(self.parent, self.child_id, completion, self._one_step)
            return
        node = Node(
            id=self.child_id,
            parent_id=self.parent.id,
            depth=self.parent.depth + 1,
            token_ids=completion.token_ids if completion is not None else (),
            text=completion.text if completion is not None else "",
            token_logprobs=completion.token_logprobs if completion is not None else (),
            top_logprobs=completion.top_logprobs if completion is not None else (),
            cum_logprob=self.parent.cum_logprob
            + (sum(completion.token_logprobs) if completion is not None else 0.0),
            finish_reason="abort",
        )
        self.node = ctx.graph.add_child(node)
        if isinstance(exc, EngineError):
            ctx.graph.mark(node.id, "failed", error=str(exc))
        else:
            ctx.graph.mark(node.id, "aborted")


def _open(engine: Engine, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
    """The engine's stream, or one final result for engines that cannot stream."""
    if isinstance(engine, StreamingEngine):
        return engine.stream(request)
    return _one_shot(engine, request)


async def _one_shot(engine: Engine, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
    # Cancelling the consumer cancels generate(), which aborts the request in the engine.
    yield await engine.generate(request)

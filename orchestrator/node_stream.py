"""Streaming one child of a node: partial completions as tokens arrive, abort on demand.

Token-level strategies (DeepConf online, first-finish, entropy-adaptive branching) watch a
sample while it is written and stop it early. :class:`NodeStream` is the handle they get from
the port's ``stream``; whatever happens inside its ``async with`` block, the child is recorded
in the graph on exit (by :class:`~branchwise.orchestrator.generation.Generation`, the one place
nodes are built) and every token the engine reported is accounted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import Self

from branchwise.core.errors import EngineError
from branchwise.core.graph import Node
from branchwise.orchestrator.engines.types import Completion, GenerationRequest, GenerationResult
from branchwise.orchestrator.generation import Generation
from branchwise.orchestrator.ledger import Reservation


class NodeStream:
    """A child of ``parent`` being generated token by token (one sample, ``n=1``).

    Use as ``async with port.stream(node) as stream:`` then ``async for partial in
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
        generation: Generation,
        parent: Node,
        child_id: str,
        request: GenerationRequest,
        one_step: bool,
    ) -> None:
        self._generation = generation
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
        ledger = self._generation.ledger
        spec = self.request.sampling
        prompt = len(self.request.prompt_token_ids)
        # A stream ends only as its consumer reads it, so nothing may wait for it (waitable).
        self._held = await ledger.admit(
            n=1,
            max_tokens=spec.max_tokens,
            new_nodes=1,
            prompt_tokens=prompt,
            key=self.child_id,
            waitable=False,
            engine=self._generation.engine_name,
        )
        try:
            self.request = replace(
                self.request,
                sampling=spec.model_copy(update={"max_tokens": self._held.per_sample}),
            )
            self._iterator = self._generation.open_stream(self.request)
        except BaseException:
            self._held.release()  # no __aexit__ follows a failed __aenter__
            raise
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Completion:
        if self._iterator is None:
            raise RuntimeError("use NodeStream inside `async with`")
        result = await self._generation.guarded(
            anext(self._iterator), f"streaming {self.child_id}", self.child_id
        )
        if not result.completions:
            raise EngineError(
                "engine streamed a result without completions",
                problem_id=self._generation.problem_id,
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
        if last is None:
            return
        completion = last.completions[0]
        if completion.finish_reason in ("stop", "length") and not self._cut:
            return  # finished: the engine already decoded all of it
        text = await self._generation.decode(completion.token_ids)
        if text is not None:
            self._last = replace(last, completions=(replace(completion, text=text),))

    def _record(self, held: Reservation, exc: BaseException | None) -> None:
        last = self._last
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
        generation = self._generation
        if finished:
            assert completion is not None
            self.node = generation.record(self.parent, self.child_id, completion, self._one_step)
        else:
            error = str(exc) if isinstance(exc, EngineError) else None
            self.node = generation.record_cut(self.parent, self.child_id, completion, error)

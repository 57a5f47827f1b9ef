"""Generation: the only place a node is built from what an engine wrote.

One guarded engine call (:meth:`Generation.guarded`) turns a time-out into either the end of
the time budget (:class:`BudgetExhausted`) or an engine failure (:class:`EngineTimeout`) and
tags engine errors with the problem and node, for whole requests and stream chunks alike.
:meth:`Generation.child` builds every child node (sampled, streamed, cut off or forced):
terminal unless a step delimiter ended it in one-step mode, with its answer read from the
whole path when terminal; a generation the engine cut off is recorded as failed, never as a
candidate answer. Request ids and seeds derive from the run seed and the child's path, so
what a node holds never depends on when its request ran.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from branchwise.core.errors import BudgetExhausted, EngineError, EngineTimeout
from branchwise.core.graph import Node, SearchGraph
from branchwise.core.reasoning import ReasoningTags, answer_part, unclosed_reason
from branchwise.core.seeding import derive_seed
from branchwise.orchestrator.engines.base import Engine, LogprobEngine, TokenEngine
from branchwise.orchestrator.engines.code_book import code_points, lattice_offset
from branchwise.orchestrator.engines.types import (
    Completion,
    GenerationRequest,
    GenerationResult,
    LogprobRequest,
    SamplingSpec,
)
from branchwise.orchestrator.ledger import Ledger
from branchwise.verifiers.answers import AnswerSpec, extract_answer

T = TypeVar("T")


def step_stop(step_delimiter: str, stop: Sequence[str]) -> tuple[str, ...]:
    """A one-step request's stop strings: the step delimiter first, then the recipe's own."""
    return tuple(dict.fromkeys((step_delimiter, *stop)))


@dataclass(frozen=True)
class Rewritten:
    """A completion as a thinking budget rewrote it (see :meth:`Generation.expand`)."""

    completion: Completion
    keep_open: bool = False
    cut: Completion | None = None
    """Generated tokens taken off the end (recorded as a pruned node, with ``why``)."""
    why: str | None = None


class Generation:
    """One search's access to its engine: requests, guarded calls and node building."""

    def __init__(
        self,
        *,
        engine: Engine,
        graph: SearchGraph,
        ledger: Ledger,
        sampling: SamplingSpec,
        step_delimiter: str,
        answer_spec: AnswerSpec,
        seed: int,
        run_id: str,
        reasoning: ReasoningTags | None = None,
        engine_name: str | None = None,
    ) -> None:
        """``reasoning``: the recipe's reasoning format as token ids (None: no thinking);
        ``engine_name``: the engine's name in a recipe with several, under which the ledger
        counts its usage apart (None: one engine, nothing counted apart)."""
        self.engine = engine
        self.engine_name = engine_name
        self.graph = graph
        self.ledger = ledger
        self.sampling = sampling
        self.step_delimiter = step_delimiter
        self.answer_spec = answer_spec
        self.seed = seed
        self.run_id = run_id
        self.problem_id = graph.problem_id
        self.reasoning = reasoning
        self._scorings = itertools.count()

    def spec(
        self,
        one_step: bool,
        max_tokens: int | None,
        temperature: float | None,
        logprobs: int | None,
    ) -> SamplingSpec:
        """The recipe's sampling with a call's overrides; one-step requests stop at steps."""
        update: dict[str, object] = {}
        if one_step:
            update["stop"] = step_stop(self.step_delimiter, self.sampling.stop)
        if max_tokens is not None:
            update["max_tokens"] = max_tokens
        if temperature is not None:
            update["temperature"] = temperature
        if logprobs is not None:
            update["logprobs"] = logprobs
        return self.sampling.model_copy(update=update) if update else self.sampling

    def request(
        self,
        node: Node,
        child_ids: Sequence[str],
        spec: SamplingSpec,
        max_tokens: int | None = None,
        prompt_ids: tuple[int, ...] | None = None,
    ) -> GenerationRequest:
        """The engine request for ``child_ids`` of ``node``; its id and seed name the first
        (``max_tokens``: what the ledger admitted per sample, if it cut the spec's;
        ``prompt_ids``: a prompt variant's ids in place of the path's, root children only)."""
        first = child_ids[0]
        update: dict[str, object] = {"seed": derive_seed(self.seed, self.problem_id, first)}
        if max_tokens is not None:
            update["max_tokens"] = max_tokens
        return GenerationRequest(
            request_id=f"{self.run_id}:{self.problem_id}:{first}x{len(child_ids)}",
            prompt_token_ids=self.graph.full_token_ids(node.id)
            if prompt_ids is None
            else prompt_ids,
            sampling=spec.model_copy(update=update),
            n=len(child_ids),
            affinity=self.problem_id,
            codes=self.codes(node, child_ids) if spec.method == "arithmetic" else (),
        )

    def codes(self, node: Node, child_ids: Sequence[str]) -> tuple[float, ...]:
        """Arithmetic sampling's code points of these children: one lattice per node, its
        offset from the run seed and the node's path, a child's point from its index, so
        children asked for in several requests share the lattice (see engines.code_book)."""
        offset = lattice_offset(derive_seed(self.seed, self.problem_id, node.id, "code book"))
        return code_points(offset, [int(c.rsplit(".", 1)[1]) for c in child_ids])

    async def expand(
        self,
        node: Node,
        k: int,
        spec: SamplingSpec,
        one_step: bool,
        *,
        rewrite: Callable[[Completion], Rewritten] | None = None,
        variant: tuple[str, tuple[int, ...]] | None = None,
    ) -> list[Node]:
        """``k`` children of ``node`` in one request, admitted, paid for and recorded.

        ``rewrite`` (thinking budgets): applied to each completion before its node is built;
        returns the completion to record, whether the child stays open, and the tail cut off
        it (paid for, so it is recorded as a pruned child of the child). ``variant``: (label,
        prompt ids) of a prompt variant the children are sampled under."""
        prompt_ids = self.graph.full_token_ids(node.id) if variant is None else variant[1]
        held = await self.ledger.admit(
            n=k,
            max_tokens=spec.max_tokens,
            new_nodes=k,
            prompt_tokens=len(prompt_ids),
            key=node.id,
            waitable=True,
            engine=self.engine_name,
        )
        with held:  # leaving unsettled (a failure, a cancellation) gives it all back
            child_ids = self.graph.reserve_child_ids(node.id, k)
            request = self.request(
                node, child_ids, spec, max_tokens=held.per_sample, prompt_ids=prompt_ids
            )
            result = await self.guarded(self.engine.generate(request), f"on {request.request_id}")
            completions = result.completions
            kept = [rewrite(c) if rewrite else Rewritten(c) for c in completions]
            held.settle(
                generated=sum(len(c.token_ids) for c in completions),
                prompt=result.prompt_tokens,
                cached=result.cached_prompt_tokens,
                nodes=len(completions) + sum(r.cut is not None for r in kept),
            )
        if len(completions) != k:
            raise EngineError(
                f"engine returned {len(completions)} completions for n={k}",
                problem_id=self.problem_id,
                node_id=child_ids[0],
            )
        label = None if variant is None else variant[0]
        children = []
        for child_id, r in zip(child_ids, kept, strict=True):
            child = self.record(
                node, child_id, r.completion, one_step, keep_open=r.keep_open, prompt_variant=label
            )
            if r.cut is not None:
                cut_id = self.graph.reserve_child_ids(child.id, 1)[0]
                self.graph.add_child(
                    self.child(child, cut_id, r.cut, terminal=False, finish_reason="stop")
                )
                self.graph.mark(cut_id, "pruned", error=r.why)
            children.append(child)
        return children

    async def guarded(self, call: Awaitable[T], what: str, node_id: str | None = None) -> T:
        """Await an engine call within the time budget, translating its failures once.

        ``what`` completes the time-out message ("on REQUEST", "streaming NODE")."""
        deadline = asyncio.timeout(self.ledger.seconds_left())
        try:
            async with deadline:
                return await call
        except TimeoutError as exc:
            if deadline.expired():
                raise BudgetExhausted(
                    "time budget spent during generation",
                    problem_id=self.problem_id,
                    node_id=node_id,
                ) from None
            # the engine's own time-out is an engine failure, never an empty anytime answer
            raise EngineTimeout(
                f"engine timed out {what}: {exc}", problem_id=self.problem_id, node_id=node_id
            ) from exc
        except EngineError as exc:
            exc.problem_id = exc.problem_id or self.problem_id
            exc.node_id = exc.node_id or node_id
            raise

    def open_stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        """The engine's stream, or one final result for engines that cannot stream."""
        from branchwise.orchestrator.engines.base import StreamingEngine

        if isinstance(self.engine, StreamingEngine):
            return self.engine.stream(request)
        return _one_shot(self.engine, request)

    def record(
        self,
        parent: Node,
        node_id: str,
        c: Completion,
        one_step: bool,
        *,
        keep_open: bool = False,
        prompt_variant: str | None = None,
    ) -> Node:
        """Add a finished completion as the child ``node_id`` of ``parent``; returns it.

        A generation the engine cut off (``abort``/``error``) is recorded as failed. The
        caller has settled its budget. ``keep_open``: the path goes on (not terminal).
        """
        failed = c.finish_reason in ("abort", "error")
        ended_step = (one_step and c.ended_by_stop_string) or keep_open
        child = self.graph.add_child(
            self.child(
                parent,
                node_id,
                c,
                terminal=not failed and not ended_step,
                finish_reason=c.finish_reason,
                prompt_variant=prompt_variant,
            )
        )
        if failed:
            self.graph.mark(child.id, "failed", error=f"generation {c.finish_reason}ed")
        else:
            self._note_unclosed(child)
        return child

    def _note_unclosed(self, child: Node) -> None:
        """A finished path still thinking has no answer; its state says why."""
        if self.reasoning is not None and child.terminal and child.thinking_open:
            self.graph.state(child.id).error = unclosed_reason(self.reasoning.format)

    def record_cut(
        self, parent: Node, node_id: str, c: Completion | None, error: str | None
    ) -> Node:
        """Add a sample stopped before the engine finished (its tokens so far) as aborted,
        or as failed when an engine error stopped it."""
        child = self.graph.add_child(
            self.child(parent, node_id, c, terminal=False, finish_reason="abort")
        )
        if error is not None:
            self.graph.mark(child.id, "failed", error=error)
        else:
            self.graph.mark(child.id, "aborted")
        return child

    async def extend(self, node: Node, ids: tuple[int, ...], chosen: tuple[float, ...]) -> Node:
        """A forced child of ``node`` (tokens placed, not sampled), paid as one node."""
        held = self.ledger.reserve_nodes(1)
        with held:
            engine = self._token_engine()
            child_id = self.graph.reserve_child_ids(node.id, 1)[0]
            text = await self._decode_after(engine, node, ids)
            eos = engine.eos_token_id
            terminal = eos is not None and ids[-1] == eos
            forced = Completion(
                token_ids=ids,
                text=text,
                finish_reason="stop" if terminal else "length",
                token_logprobs=chosen,
            )
            child = self.child(
                node,
                child_id,
                forced,
                terminal=terminal,
                finish_reason="stop" if terminal else None,
                forced=True,
            )
            held.settle(nodes=1)
        added = self.graph.add_child(child)
        self._note_unclosed(added)
        return added

    async def logprobs_of(self, node: Node, ids: tuple[int, ...]) -> tuple[float, ...]:
        """log p of ``ids`` written after ``node``'s path: one scoring request, paid as an
        engine call and prompt tokens (the engine reads the path and ``ids``), no node."""
        if not isinstance(self.engine, LogprobEngine):  # recipes and the runner refuse this
            raise EngineError(
                f"engine {self.engine.name!r} cannot score given tokens (logprobs_of)",
                problem_id=self.problem_id,
                node_id=node.id,
            )
        prefix = self.graph.full_token_ids(node.id)
        held = await self.ledger.admit(
            n=1,
            max_tokens=1,
            new_nodes=0,
            prompt_tokens=len(prefix) + len(ids),
            key=node.id,
            waitable=True,
        )
        with held:
            request = LogprobRequest(
                request_id=f"{self.run_id}:{self.problem_id}:{node.id}:lp{next(self._scorings)}",
                prompt_token_ids=prefix,
                token_ids=ids,
                affinity=self.problem_id,
            )
            what = f"scoring {request.request_id}"
            result = await self.guarded(self.engine.logprobs_of(request), what, node.id)
            held.settle(prompt=result.prompt_tokens, cached=result.cached_prompt_tokens)
        if len(result.token_logprobs) != len(ids):
            raise EngineError(
                f"engine scored {len(result.token_logprobs)} of {len(ids)} tokens",
                problem_id=self.problem_id,
                node_id=node.id,
            )
        return result.token_logprobs

    async def decode(self, token_ids: tuple[int, ...]) -> str | None:
        """The text of ``token_ids`` (None when the engine cannot decode)."""
        if not isinstance(self.engine, TokenEngine):
            return None
        return await self.engine.decode(token_ids)

    def child(
        self,
        parent: Node,
        node_id: str,
        c: Completion | None,
        *,
        terminal: bool,
        finish_reason: str | None,
        forced: bool = False,
        prompt_variant: str | None = None,
    ) -> Node:
        """The one constructor of a child node from what the engine (or a strategy) wrote."""
        logprobs = c.token_logprobs if c is not None else ()
        node = Node(
            id=node_id,
            parent_id=parent.id,
            depth=parent.depth + 1,
            token_ids=c.token_ids if c is not None else (),
            text=c.text if c is not None else "",
            token_logprobs=logprobs,
            top_logprobs=c.top_logprobs if c is not None and not forced else (),
            cum_logprob=parent.cum_logprob + sum(logprobs),
            finish_reason=finish_reason,
            terminal=terminal,
            forced=forced,
            prompt_variant=prompt_variant,
        )
        tags = self.reasoning
        if tags is not None and parent.thinking_open:
            thought = self.graph.solution_text(parent.id)  # all thinking: the path is open
            count, still_open = tags.segment(thought, node.text, node.token_ids)
            node = replace(node, thinking_tokens=count, thinking_open=still_open)
            if not forced:
                self.ledger.count_thinking(count)
        if terminal:
            whole = self.graph.solution_text(parent.id) + node.text
            part = answer_part(whole, tags.format if tags is not None else None)
            answer = extract_answer(part, self.answer_spec) if part is not None else None
            node = replace(node, answer=answer)
        return node

    def _token_engine(self) -> TokenEngine:
        if not isinstance(self.engine, TokenEngine):  # recipes and the runner refuse this early
            raise EngineError(
                f"engine {self.engine.name!r} is not a TokenEngine, which forced tokens need",
                problem_id=self.problem_id,
            )
        return self.engine

    async def _decode_after(self, engine: TokenEngine, node: Node, ids: tuple[int, ...]) -> str:
        # Decode in context: some tokenizers write a token differently after a prefix.
        prefix = self.graph.full_token_ids(node.id)
        head = await engine.decode(prefix)
        whole = await engine.decode(prefix + ids)
        return whole[len(head) :] if whole.startswith(head) else await engine.decode(ids)


async def _one_shot(engine: Engine, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
    # Cancelling the consumer cancels generate(), which aborts the request in the engine.
    yield await engine.generate(request)

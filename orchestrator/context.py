"""The search context: everything a strategy may do, and nothing else.

Strategies expand nodes, score them, prune them and read the budget through this object, so
the same strategy runs on in-process vLLM, an HTTP fleet or the scripted engine. The context
owns token accounting, budget enforcement, per-node seeds and score memoisation.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from branchwise.core.errors import BudgetExhausted, EngineError, EngineTimeout
from branchwise.core.graph import Node, Score, SearchGraph
from branchwise.core.problem import Problem
from branchwise.core.scoring import Candidate, PairwiseScorer, Scorer
from branchwise.core.seeding import derive_seed
from branchwise.orchestrator.budget import BudgetTracker
from branchwise.orchestrator.engines.base import Engine, TokenEngine
from branchwise.orchestrator.engines.types import (
    Completion,
    GenerationRequest,
    GenerationResult,
    SamplingSpec,
)
from branchwise.orchestrator.lending import PoolSeat
from branchwise.orchestrator.score_memo import ScoreMemo
from branchwise.orchestrator.steps import path_steps
from branchwise.orchestrator.streaming import NodeStream
from branchwise.verifiers.answers import AnswerSpec, extract_answer


class SearchContext:
    """One problem's search: its graph, budget, rng, engine access and scorers."""

    def __init__(
        self,
        *,
        problem: Problem,
        prompt: str,
        prompt_token_ids: tuple[int, ...],
        engine: Engine,
        sampling: SamplingSpec,
        step_delimiter: str,
        scorers: dict[str, Scorer],
        budget: BudgetTracker,
        answer_spec: AnswerSpec,
        seed: int,
        run_id: str = "run",
        pool: PoolSeat | None = None,
    ) -> None:
        self.problem = problem
        self.pool = pool
        """This problem's seat in the run's lending pool (None when solved on its own)."""
        self.engine = engine
        self.sampling = sampling
        self.step_delimiter = step_delimiter
        self.scorers = scorers
        self.budget = budget
        self.answer_spec = answer_spec
        self.seed = seed
        self.run_id = run_id
        self.graph = SearchGraph(problem.id, prompt_token_ids, prompt)
        self.rng = random.Random(derive_seed(seed, problem.id, "strategy"))
        self._memo = ScoreMemo(
            problem=problem,
            graph=self.graph,
            budget=budget,
            scorers=scorers,
            candidate=self.candidate,
        )

    @property
    def root(self) -> Node:
        return self.graph.root

    async def expand(
        self,
        node: Node,
        k: int,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """Sample ``k`` children of ``node``: one step each, or to the end (``one_step=False``).

        Raises BudgetExhausted when the budget cannot pay for one token per child; the
        request's seed derives from the run seed and the children's path, so results do not
        depend on when this call happens relative to others.
        """
        if k < 1:
            return []
        spec = self._sampling_for(one_step, max_tokens, temperature, logprobs)
        prompt_ids = self.graph.full_token_ids(node.id)
        held = await self.budget.admit(
            n=k,
            max_tokens=spec.max_tokens,
            new_nodes=k,
            prompt_tokens=len(prompt_ids),
            key=node.id,
            waitable=True,
        )
        with held:  # leaving unsettled (a failure, a cancellation) gives it all back
            child_ids = self.graph.reserve_child_ids(node.id, k)
            seed = derive_seed(self.seed, self.problem.id, child_ids[0])
            spec = spec.model_copy(update={"max_tokens": held.per_sample, "seed": seed})
            request = GenerationRequest(
                request_id=f"{self.run_id}:{self.problem.id}:{child_ids[0]}x{k}",
                prompt_token_ids=prompt_ids,
                sampling=spec,
                n=k,
                affinity=self.problem.id,
            )
            result = await self._generate(request)
            completions = result.completions
            held.settle(
                generated=sum(len(c.token_ids) for c in completions),
                prompt=result.prompt_tokens,
                cached=result.cached_prompt_tokens,
                nodes=len(completions),
            )
        if len(completions) != k:
            raise EngineError(
                f"engine returned {len(completions)} completions for n={k}",
                problem_id=self.problem.id,
                node_id=child_ids[0],
            )
        return [
            self.add_completion(node, cid, c, one_step)
            for cid, c in zip(child_ids, completions, strict=True)
        ]

    def add_completion(self, parent: Node, node_id: str, c: Completion, one_step: bool) -> Node:
        """Record a finished completion as the child ``node_id`` of ``parent``; returns it.

        How :meth:`expand` and :class:`NodeStream` turn what the engine wrote into a node:
        terminal unless a step delimiter ended it in one-step mode, with its answer extracted
        when terminal; a generation the engine cut off (``abort``/``error``) is recorded as
        failed, never as a candidate answer. The caller has settled its budget.
        """
        child = self.graph.add_child(self._make_node(parent, node_id, c, one_step))
        if c.finish_reason in ("abort", "error"):
            self.graph.mark(child.id, "failed", error=f"generation {c.finish_reason}ed")
        return child

    async def sample(
        self,
        k: int,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """``k`` whole solutions from the root (best-of-N, self-consistency)."""
        return await self.expand(
            self.root,
            k,
            one_step=False,
            max_tokens=max_tokens,
            temperature=temperature,
            logprobs=logprobs,
        )

    def stream_expand(
        self,
        node: Node,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> NodeStream:
        """One child of ``node`` streamed token by token; use as ``async with``.

        The child id and seed are fixed here, in call order; the budget is checked when
        the block is entered (raising BudgetExhausted). See :class:`NodeStream` for how
        partial and aborted children are recorded. Engines that cannot stream yield one
        final result, so the same strategy still runs there (without early stopping).
        """
        spec = self._sampling_for(one_step, max_tokens, temperature, logprobs)
        child_id = self.graph.reserve_child_ids(node.id, 1)[0]
        seed = derive_seed(self.seed, self.problem.id, child_id)
        request = GenerationRequest(
            request_id=f"{self.run_id}:{self.problem.id}:{child_id}x1",
            prompt_token_ids=self.graph.full_token_ids(node.id),
            sampling=spec.model_copy(update={"seed": seed}),
            n=1,
            affinity=self.problem.id,
        )
        return NodeStream(self, node, child_id, request, one_step)

    async def extend(
        self, node: Node, token_ids: Sequence[int], *, token_logprobs: Sequence[float] = ()
    ) -> Node:
        """A child of ``node`` made of the given tokens, not sampled (``forced``).

        It costs no generated tokens (token-level branching forces an alternative token, or
        copies a prefix that was already paid for). Its text is decoded by the engine; a
        forced end-of-sequence token makes it terminal with an extracted answer.
        """
        ids = tuple(token_ids)
        if not ids:
            raise ValueError("extend needs at least one token")
        try:
            held = self.budget.reserve_nodes(1)
        except BudgetExhausted as exc:
            exc.problem_id = self.problem.id
            raise
        with held:
            child = await self._forced_child(node, ids, tuple(token_logprobs))
            held.settle(nodes=1)
        return self.graph.add_child(child)

    async def _forced_child(
        self, node: Node, ids: tuple[int, ...], chosen: tuple[float, ...]
    ) -> Node:
        child_id = self.graph.reserve_child_ids(node.id, 1)[0]
        engine = self._token_engine()
        text = await self._decode_after(engine, node, ids)
        eos = engine.eos_token_id
        terminal = eos is not None and ids[-1] == eos
        child = Node(
            id=child_id,
            parent_id=node.id,
            depth=node.depth + 1,
            token_ids=ids,
            text=text,
            token_logprobs=chosen,
            cum_logprob=node.cum_logprob + sum(chosen),
            finish_reason="stop" if terminal else None,
            terminal=terminal,
            forced=True,
        )
        if terminal:
            whole = self.graph.solution_text(node.id) + text
            child = _with_answer(child, extract_answer(whole, self.answer_spec))
        return child

    def _token_engine(self) -> TokenEngine:
        if not isinstance(self.engine, TokenEngine):  # recipes and the runner refuse this early
            raise EngineError(
                f"engine {self.engine.name!r} is not a TokenEngine, which ctx.extend needs",
                problem_id=self.problem.id,
            )
        return self.engine

    async def _decode_after(self, engine: TokenEngine, node: Node, ids: tuple[int, ...]) -> str:
        # Decode in context: some tokenizers write a token differently after a prefix.
        prefix = self.graph.full_token_ids(node.id)
        head = await engine.decode(prefix)
        whole = await engine.decode(prefix + ids)
        return whole[len(head) :] if whole.startswith(head) else await engine.decode(ids)

    async def compare(self, pairs: Sequence[tuple[Node, Node]], scorer: str) -> list[Score]:
        """A pairwise scorer's verdict on each pair (no memo: ask each pair once).

        Each pair counts as one scorer call. A failing scorer yields error scores for the
        whole batch, never plausible values.
        """
        found = self.scorers.get(scorer)
        if found is None:
            known = ", ".join(sorted(self.scorers)) or "none configured"
            raise KeyError(f"strategy asked for scorer {scorer!r}; recipe has: {known}")
        if not isinstance(found, PairwiseScorer):
            raise TypeError(
                f"scorer {scorer!r} ({found.config.kind}) cannot compare pairs; "
                "it must be a PairwiseScorer"
            )
        if not pairs:
            return []
        self.budget.spend_scoring(len(pairs))
        views = [(self.candidate(a), self.candidate(b)) for a, b in pairs]
        try:
            scores = await found.compare(self.problem, views)
            if len(scores) != len(pairs):
                raise ValueError(f"returned {len(scores)} scores for {len(pairs)} pairs")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded as errors; the strategy decides what to do
            error = f"{scorer}: {type(exc).__name__}: {exc}"
            scores = [Score(value=None, error=error) for _ in pairs]
        return scores

    async def score(self, nodes: Sequence[Node], scorer: str) -> list[Score]:
        """Scores of ``nodes`` by the named scorer; each node is scored at most once."""
        return await self._memo.score(nodes, scorer)

    def candidate(self, node: Node) -> Candidate:
        path = self.graph.path(node.id)
        logprobs: list[float] = []
        tops: list[tuple[float, ...]] = []
        for n in path[1:]:
            logprobs.extend(n.token_logprobs)
            tops.extend(n.top_logprobs)
        return Candidate(
            node_id=node.id,
            prompt=path[0].text,
            steps=path_steps(((n.text, ends_step(n)) for n in path[1:]), self.step_delimiter),
            answer=node.answer,
            terminal=node.terminal,
            token_logprobs=tuple(logprobs),
            top_logprobs=tuple(tops),
        )

    def prune(self, nodes: Sequence[Node]) -> None:
        """Mark nodes as pruned; they stay in the graph as part of the trace."""
        for node in nodes:
            self.graph.mark(node.id, "pruned")

    def solution(self, node: Node) -> str:
        return self.graph.solution_text(node.id)

    def _sampling_for(
        self,
        one_step: bool,
        max_tokens: int | None,
        temperature: float | None,
        logprobs: int | None,
    ) -> SamplingSpec:
        update: dict[str, object] = {}
        if one_step:
            # the step delimiter first, then any stop strings the recipe adds
            update["stop"] = tuple(dict.fromkeys((self.step_delimiter, *self.sampling.stop)))
        if max_tokens is not None:
            update["max_tokens"] = max_tokens
        if temperature is not None:
            update["temperature"] = temperature
        if logprobs is not None:
            update["logprobs"] = logprobs
        return self.sampling.model_copy(update=update) if update else self.sampling

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
        seconds = self.budget.seconds_left()
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await self.engine.generate(request)
        except TimeoutError as exc:
            if deadline.expired():
                raise BudgetExhausted(
                    "time budget spent during generation", problem_id=self.problem.id
                ) from None
            # the engine's own time-out is an engine failure, never an empty anytime answer
            raise EngineTimeout(
                f"engine timed out on {request.request_id}: {exc}", problem_id=self.problem.id
            ) from exc
        except EngineError as exc:
            exc.problem_id = exc.problem_id or self.problem.id
            raise

    def _make_node(self, parent: Node, node_id: str, c: Completion, one_step: bool) -> Node:
        failed = c.finish_reason in ("abort", "error")
        terminal = not failed and not (one_step and c.ended_by_stop_string)
        cum = parent.cum_logprob + sum(c.token_logprobs)
        node = Node(
            id=node_id,
            parent_id=parent.id,
            depth=parent.depth + 1,
            token_ids=c.token_ids,
            text=c.text,
            token_logprobs=c.token_logprobs,
            top_logprobs=c.top_logprobs,
            cum_logprob=cum,
            finish_reason=c.finish_reason,
            terminal=terminal,
        )
        if terminal:
            text = self.graph.solution_text(parent.id) + c.text
            node = _with_answer(node, extract_answer(text, self.answer_spec))
        return node


def ends_step(node: Node) -> bool:
    """Whether generation stopped this node at a stop string (the step delimiter)."""
    return node.finish_reason == "stop" and not node.terminal


def _with_answer(node: Node, answer: str | None) -> Node:
    from dataclasses import replace

    return replace(node, answer=answer)

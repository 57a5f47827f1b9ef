"""The search context: the orchestrator's implementation of the search port.

A strategy sees one problem's search only through :class:`~branchwise.core.port.SearchPort`;
this class implements it as a view of its graph (:class:`GraphView`: the reads, values by the
one score -> value rule) plus collaborators of one job each for the effects: the
:class:`~branchwise.orchestrator.ledger.Ledger` (budget, admission, usage),
:class:`~branchwise.orchestrator.generation.Generation` (engine calls and node building) and
:class:`~branchwise.orchestrator.scoring.Scoring` (the score memo). It adds no rule of its
own: reads go to the graph, effects to their collaborator.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchwise.core.errors import BranchwiseError, BudgetExhausted
from branchwise.core.graph import Node, Score, SearchGraph
from branchwise.core.port import PromptVariant
from branchwise.core.problem import Problem
from branchwise.core.reasoning import ReasoningTags
from branchwise.core.scorers import Scorer
from branchwise.core.seeding import derive_seed
from branchwise.core.values import Aggregation
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.engines.types import SamplingSpec
from branchwise.orchestrator.generation import Generation
from branchwise.orchestrator.graph_view import GraphView
from branchwise.orchestrator.ledger import Ledger
from branchwise.orchestrator.lending import PoolSeat
from branchwise.orchestrator.node_stream import NodeStream
from branchwise.orchestrator.prompting import PromptSpec, render_variant
from branchwise.orchestrator.scoring import Scoring
from branchwise.orchestrator.thinking_budget import ThinkingBudget
from branchwise.verifiers.answers import AnswerSpec


@dataclass(frozen=True)
class SearchSettings:
    """What every search of a run shares: the engine, the scorers and the recipe's rules."""

    engine: Engine
    sampling: SamplingSpec
    step_delimiter: str
    answer_spec: AnswerSpec
    seed: int
    scorers: Mapping[str, Scorer[Any]] = field(default_factory=dict)
    run_id: str = "run"
    aggregation: Aggregation | None = None
    """How the strategy folds step values into a value (None: the scorer's own value)."""
    reasoning: ReasoningTags | None = None
    """The recipe's reasoning format as the engine's token ids (None: no thinking)."""
    prompt: PromptSpec = field(default_factory=PromptSpec)
    """The recipe's prompt section: prompt variants (``sample_variant``) render with it."""
    base_dir: Path = Path(".")
    """Where the recipe's relative paths (a chat template file) resolve."""
    engines: Mapping[str, Engine] = field(default_factory=dict)
    """The recipe's named policy engines besides ``engine`` (``expand_with``); with any, the
    usage of each, ``engine`` as ``default`` included, is counted apart."""


DEFAULT_ENGINE = "default"
"""The name the recipe's own ``engine`` goes by in per-engine usage."""


class SearchContext(GraphView):
    """One problem's search: a view of its graph plus the ledger, generation, scoring, rng
    and lending seat behind the port's effects."""

    def __init__(
        self,
        *,
        problem: Problem,
        prompt: str,
        prompt_token_ids: tuple[int, ...],
        settings: SearchSettings,
        ledger: Ledger,
        pool: PoolSeat | None = None,
    ) -> None:
        graph = SearchGraph(
            problem.id, prompt_token_ids, prompt, thinking_open=settings.reasoning is not None
        )
        super().__init__(graph, aggregation=settings.aggregation)
        self.problem = problem
        self.ledger = ledger
        self._rng = random.Random(derive_seed(settings.seed, problem.id, "strategy"))
        self._settings = settings
        self._variant_ids: dict[PromptVariant, tuple[int, ...]] = {}
        self._pool = pool
        self.generation = Generation(
            engine=settings.engine,
            graph=self.graph,
            ledger=ledger,
            sampling=settings.sampling,
            step_delimiter=settings.step_delimiter,
            answer_spec=settings.answer_spec,
            seed=settings.seed,
            run_id=settings.run_id,
            reasoning=settings.reasoning,
            engine_name=DEFAULT_ENGINE if settings.engines else None,
        )
        self._named: dict[str, Generation] = {}
        if settings.engines:
            for name in (DEFAULT_ENGINE, *settings.engines):
                ledger.track_engine(name)
        self.thinking: ThinkingBudget | None = None
        limits = ledger.budget.max_thinking_tokens, ledger.budget.min_thinking_tokens
        self._budgeted_thinking = limits != (None, None)
        if settings.reasoning is not None:
            self.thinking = ThinkingBudget(
                self.generation, settings.reasoning, max_thinking=limits[0], min_thinking=limits[1]
            )
        self.scoring = Scoring(
            problem=problem,
            graph=self.graph,
            budget=ledger,
            scorers=settings.scorers,
            step_delimiter=settings.step_delimiter,
            aggregation=settings.aggregation,
            reasoning=settings.reasoning.format if settings.reasoning is not None else None,
        )

    # The tree, read-only, comes from GraphView: root, node, children, path, terminals,
    # status, score_of, value (the one rule, with the strategy's declared aggregation),
    # solution, written_tokens, len.

    # -- budget, rng, lending ------------------------------------------------------------

    @property
    def rng(self) -> random.Random:
        return self._rng

    @property
    def budget(self) -> Ledger:
        return self.ledger

    @property
    def max_tokens(self) -> int:
        return self.generation.sampling.max_tokens

    @property
    def lending(self) -> PoolSeat | None:
        """This problem's seat in the run's lending pool (None when solved on its own)."""
        return self._pool

    # -- effects -------------------------------------------------------------------------

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

        Raises BudgetExhausted when the budget cannot pay for one token per child.
        """
        if k < 1:
            return []
        spec = self.generation.spec(one_step, max_tokens, temperature, logprobs)
        if self.thinking is not None and self._budgeted_thinking:
            return await self.thinking.expand(node, k, spec, one_step)
        return await self.generation.expand(node, k, spec, one_step)

    async def expand_with(
        self,
        engine: str,
        node: Node,
        k: int,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """Like :meth:`expand`, but the children are written by the recipe's named engine
        ``engine`` (same graph, budget, seeds and node rules; its usage counted apart)."""
        if k < 1:
            return []
        if self._budgeted_thinking:
            raise BranchwiseError(
                "budget.max_thinking_tokens/min_thinking_tokens apply to the recipe's own "
                "engine only; drop the thinking budget to expand with a named engine",
                problem_id=self.problem.id,
                node_id=node.id,
            )
        generation = self._generation_for(engine)
        spec = generation.spec(one_step, max_tokens, temperature, logprobs)
        return await generation.expand(node, k, spec, one_step)

    def _generation_for(self, engine: str) -> Generation:
        """The generation collaborator of a named engine (built on first use)."""
        found = self._named.get(engine)
        if found is not None:
            return found
        settings = self._settings
        if engine not in settings.engines:  # recipes check the names a strategy uses
            raise BranchwiseError(
                f"no engine named {engine!r} in this recipe "
                f"(engines: {sorted(settings.engines) or 'none'})",
                problem_id=self.problem.id,
            )
        built = Generation(
            engine=settings.engines[engine],
            graph=self.graph,
            ledger=self.ledger,
            sampling=settings.sampling,
            step_delimiter=settings.step_delimiter,
            answer_spec=settings.answer_spec,
            seed=settings.seed,
            run_id=settings.run_id,
            reasoning=settings.reasoning,
            engine_name=engine,
        )
        self._named[engine] = built
        return built

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

    def stream(
        self,
        node: Node,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> NodeStream:
        """One child of ``node`` streamed token by token; use as ``async with``.

        The child id and seed are fixed here, in call order; the budget is checked when the
        block is entered (raising BudgetExhausted). Engines that cannot stream yield one
        final result, so the same strategy still runs there (without early stopping).
        """
        if self._budgeted_thinking and node.thinking_open:
            raise BranchwiseError(
                "budget.max_thinking_tokens/min_thinking_tokens do not apply to streamed "
                "samples (first_finish, deepconf online, entropy_branching); drop the thinking "
                "budget or use a strategy that samples whole paths",
                problem_id=self.problem.id,
                node_id=node.id,
            )
        spec = self.generation.spec(one_step, max_tokens, temperature, logprobs)
        child_id = self.graph.reserve_child_ids(node.id, 1)[0]
        request = self.generation.request(node, [child_id], spec)
        return NodeStream(self.generation, node, child_id, request, one_step)

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
            return await self.generation.extend(node, ids, tuple(token_logprobs))
        except BudgetExhausted as exc:
            exc.problem_id = exc.problem_id or self.problem.id
            raise

    async def score(self, nodes: Sequence[Node], scorer: str) -> list[Score]:
        """Scores of ``nodes`` by the named scorer; each node is scored at most once."""
        return await self.scoring.score(nodes, scorer)

    async def values(self, nodes: Sequence[Node], scorer: str) -> list[float | None]:
        """Values of ``nodes`` under ``scorer`` by the one rule; valueless nodes are failed."""
        return await self.scoring.values(nodes, scorer)

    async def compare(self, pairs: Sequence[tuple[Node, Node]], scorer: str) -> list[Score]:
        """A pairwise scorer's verdict on each pair."""
        return await self.scoring.compare(pairs, scorer)

    def prune(self, nodes: Sequence[Node]) -> None:
        """Mark nodes as pruned; they stay in the graph as part of the trace."""
        for node in nodes:
            self.graph.mark(node.id, "pruned")

    def fail(self, node: Node, reason: str) -> None:
        """Mark a node failed: it never becomes an answer."""
        self.graph.mark(node.id, "failed", reason)

    # -- reasoning models ----------------------------------------------------------------

    def thinking_tokens(self, node: Node) -> int:
        """Thinking tokens on the path to ``node`` (0 without a reasoning format)."""
        return sum(n.thinking_tokens for n in self.graph.path(node.id))

    async def think(
        self, node: Node, *, max_tokens: int | None = None, keep_end: bool = False
    ) -> Node:
        """One child thinking on until the model would close its thinking (the tag left off,
        unless ``keep_end``)."""
        return await self._thinking("think").think(node, max_tokens, keep_end)

    async def end_thinking(self, node: Node) -> Node:
        """A forced child holding the format's end tag."""
        return await self._thinking("end_thinking").force(node, "end")

    async def continue_thinking(self, node: Node) -> Node:
        """A forced child holding the format's continuation word."""
        return await self._thinking("continue_thinking").force(node, "continue")

    def thinking_left(self, node: Node) -> int | None:
        """What the thinking budget still allows on ``node``'s path (None: no cap)."""
        if self.thinking is None or self.thinking.max_thinking is None:
            return None
        return max(0, self.thinking.max_thinking - self.thinking.thought(node))

    def _thinking(self, effect: str) -> ThinkingBudget:
        if self.thinking is None:  # recipes refuse strategies that need one without it
            raise BranchwiseError(
                f"{effect} needs the recipe's `reasoning` format", problem_id=self.problem.id
            )
        return self.thinking

    async def sample_variant(
        self,
        k: int,
        variant: PromptVariant,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """``k`` whole solutions from the root sampled under a prompt variant.

        The variant is rendered to token ids once per search (with the recipe's prompt
        section); the children are root children marked with its label.
        """
        if k < 1:
            return []
        ids = self._variant_ids.get(variant)
        if ids is None:
            settings = self._settings
            rendered = await render_variant(
                settings.prompt,
                self.problem.question,
                variant,
                settings.engine,
                settings.base_dir,
            )
            ids = self._variant_ids[variant] = rendered.token_ids
        spec = self.generation.spec(False, max_tokens, temperature, logprobs)
        return await self.generation.expand(self.root, k, spec, False, variant=(variant.label, ids))

    async def logprobs_of(self, node: Node, token_ids: Sequence[int]) -> tuple[float, ...]:
        """log p (temperature 1) of ``token_ids`` written after ``node``'s path; one scoring
        request (prompt tokens), no node. Needs an engine that scores given tokens."""
        return await self.generation.logprobs_of(node, tuple(token_ids))

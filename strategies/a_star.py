"""A* over reasoning steps: expand the frontier node with the lowest f = g + h."""

from __future__ import annotations

import heapq
from typing import Literal

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.step_search import drop_duplicates, gather_within_budget


class AStarConfig(ScoredConfig):
    name: Literal["a_star"] = "a_star"
    expansions: int = Field(4, ge=1, description="Next steps sampled each time a node expands.")
    g: Literal["neg_logprob", "steps"] = Field(
        "neg_logprob",
        description="Path cost: neg_logprob (minus the path's log-probability) or steps taken "
        "(g = depth, the ablation that removes the pull toward the likeliest tokens).",
    )
    g_scale: float = Field(
        0.1,
        ge=0,
        description="Multiplier of g: larger searches wider (toward uniform-cost search), "
        "smaller goes deeper (toward greedy best-first on the scorer).",
    )
    h_scale: float = Field(
        1.0,
        ge=0,
        description="h = (1 - path value) * h_scale; 0 is the h = 0 ablation (uniform-cost "
        "search on g, the step scorer never called).",
    )
    verifier: str | None = Field(
        None,
        description="Scorer that must accept a finished path popped from the frontier "
        "(none: the first finished path popped is the answer).",
    )
    verifier_threshold: float = Field(
        0.5, description="A finished path is accepted when the verifier's value is >= this."
    )
    max_expansions: int = Field(32, ge=1, description="Most nodes expanded before giving up.")
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    merge_duplicates: bool = Field(
        True,
        description="Sibling steps with identical text are one state (A*'s closed set): the "
        "copies are pruned unscored.",
    )
    revisit_penalty: float | None = Field(
        0.5,
        ge=0,
        description="Sampling gives a node only some of its next steps, so after each expansion "
        "it returns to the frontier at f + penalty * times expanded to draw more; null expands "
        "every node once (classic A*).",
    )
    parallel: int = Field(
        1, ge=1, description="Frontier nodes expanded at once (1 = strict best-first order)."
    )
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


class Frontier:
    """A priority queue of node ids on f; ties go to the earlier node id."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, tuple[int, ...], str]] = []

    def push(self, node_id: str, f: float) -> None:
        heapq.heappush(self._heap, (f, path_key(node_id), node_id))

    def pop(self) -> tuple[str, float]:
        f, _, node_id = heapq.heappop(self._heap)
        return node_id, f

    def __len__(self) -> int:
        return len(self._heap)


class AStar(Strategy[AStarConfig]):
    """A* decoding over steps (in the spirit of "A*-decoding", Chatziveroglou 2025, and
    Q*-style heuristic search).

    The frontier is ordered by f = g + h: g is the path cost so far (minus its log-probability,
    or its number of steps, times ``g_scale``), h the step-level scorer's doubt,
    (1 - the path's value) * ``h_scale``. The node with the lowest f (earlier id on ties) is
    expanded into ``expansions`` sampled next steps, each scored once; identical sibling steps
    are one state (``merge_duplicates``, A*'s closed set), without which equal-f copies make
    the search exponentially wide. Successors are sampled, not enumerated, so an expanded node
    re-enters the frontier at f + ``revisit_penalty`` * (times expanded) to draw more. A
    finished path is tested when popped, as A* tests goals: the ``verifier`` must value it at
    least ``verifier_threshold`` (without a verifier the first one popped wins). The search
    stops there, or after ``max_expansions``, an empty frontier or the budget, answering with
    the unrejected finished path of lowest f. Cost per expansion: one request of
    n=``expansions`` and as many scorer calls, plus one verifier call per finished path popped.
    ``parallel`` > 1 pops and expands that many nodes at once, trading strict best-first order
    for engine throughput. Ablations of what the PRM heuristic adds: ``h_scale: 0`` (h = 0,
    uniform-cost search on g; the step scorer is never called) and ``g: steps`` (g = depth,
    so the path cost no longer pulls the search toward the likeliest tokens).
    """

    config_model = AStarConfig
    description = "A*: expand the frontier node with the lowest g + h (h from the PRM)."

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        frontier = Frontier()
        frontier.push(ctx.root.id, 0.0)
        f_of: dict[str, float] = {ctx.root.id: 0.0}
        kept: dict[str, list[Node]] = {}  # children drawn so far, per expanded node
        expanded: list[str] = []
        exhausted = False
        while frontier and len(expanded) < cfg.max_expansions and not exhausted:
            batch: list[Node] = []
            while frontier and len(batch) < min(cfg.parallel, cfg.max_expansions - len(expanded)):
                node = ctx.node(frontier.pop()[0])
                if node.terminal:
                    try:
                        accepted = await self._accept(ctx, node)
                    except BudgetExhausted:
                        exhausted = True
                        break
                    if accepted:
                        detail = {"expanded": expanded, "accepted": True, "f": self._f(ctx, node)}
                        return SearchResult(node.answer, node.id, detail)
                elif node.depth >= cfg.max_depth:
                    ctx.prune([node])  # a dead end: too deep to finish
                else:
                    batch.append(node)
            if exhausted:
                break
            results, budget_hit = await gather_within_budget(
                [self._expand(ctx, n, kept.get(n.id, [])) for n in batch]
            )
            exhausted = exhausted or budget_hit
            for node, children in zip(batch, results, strict=True):
                if children is None:
                    continue
                expanded.append(node.id)
                kept.setdefault(node.id, []).extend(child for child, _ in children)
                for child, f in children:
                    f_of[child.id] = f
                    frontier.push(child.id, f)
                if cfg.revisit_penalty is not None:
                    times = expanded.count(node.id)
                    frontier.push(node.id, f_of[node.id] + cfg.revisit_penalty * times)
        result = self._fallback(ctx)
        result.detail.update({"expanded": expanded, "budget_exhausted": exhausted})
        return result

    async def _expand(
        self, ctx: SearchPort, node: Node, known: list[Node]
    ) -> list[tuple[Node, float]]:
        cfg = self.config
        logprobs = 0 if cfg.g == "neg_logprob" else None
        children = await ctx.expand(
            node, cfg.expansions, max_tokens=cfg.step_max_tokens, logprobs=logprobs
        )
        if cfg.merge_duplicates:
            children = drop_duplicates(ctx, children, known)
        if cfg.h_scale == 0:
            return [(c, self._g(c)) for c in children]  # h = 0: the scorer is never asked
        try:
            values = await ctx.values(children, cfg.scorer)
        except BudgetExhausted:
            ctx.prune(children)  # no heuristic, never on the frontier
            raise
        return [
            (c, self._g(c) + (1.0 - v) * cfg.h_scale)
            for c, v in zip(children, values, strict=True)
            if v is not None
        ]

    async def _accept(self, ctx: SearchPort, node: Node) -> bool:
        if node.answer is None:
            return False  # cut off or unparsable: not a goal
        if self.config.verifier is None:
            return True
        values = await ctx.values([node], self.config.verifier)
        return values[0] is not None and values[0] >= self.config.verifier_threshold

    def _g(self, node: Node) -> float:
        if self.config.g == "neg_logprob":
            return -node.cum_logprob * self.config.g_scale
        return node.depth * self.config.g_scale

    def _f(self, ctx: TreeView, node: Node) -> float | None:
        if self.config.h_scale == 0:
            return self._g(node)
        value = ctx.value(node, self.config.scorer)
        return None if value is None else self._g(node) + (1.0 - value) * self.config.h_scale

    def _rejected(self, ctx: TreeView, node: Node) -> bool:
        if self.config.verifier is None:
            return False
        verdict = ctx.score_of(node, self.config.verifier)
        if verdict is None:
            return False  # never popped, so never judged
        return not verdict.ok or (verdict.value or 0.0) < self.config.verifier_threshold

    def select(self, tree: TreeView) -> SearchResult:
        """No accepted path: the unrejected finished path of lowest f (rejected ones last)."""
        return self._fallback(tree)

    def _fallback(self, ctx: TreeView) -> SearchResult:
        """No accepted path: the unrejected finished path of lowest f (rejected ones last)."""
        best: tuple[bool, float, tuple[int, ...]] | None = None
        pick: Node | None = None
        for node in ctx.terminals():
            f = self._f(ctx, node)
            if f is None or node.answer is None:
                continue
            key = (self._rejected(ctx, node), f, path_key(node.id))
            if best is None or key < best:
                best, pick = key, node
        if pick is None or best is None:
            return SearchResult(None, None, {"accepted": False})
        return SearchResult(
            pick.answer, pick.id, {"accepted": False, "rejected": best[0], "f": best[1]}
        )

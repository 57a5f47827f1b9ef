"""Best-first beam search: beam search's answer, found with a priority queue that stops early."""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Literal

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.beam_search import grow_step
from branchwise.strategies.step_search import select_by_values


class BestFirstBeamConfig(ScoredConfig):
    name: Literal["best_first_beam_search"] = "best_first_beam_search"
    beam_width: int = Field(
        4, ge=1, description="Most open paths expanded at each depth (B, as in beam search)."
    )
    expansions: int = Field(4, ge=1, description="Next steps sampled per expanded path (M).")
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


class BestFirstBeamSearch(Strategy[BestFirstBeamConfig]):
    """Best-first beam search (Meister, Vieira and Cotterell 2020, "Best-First Beam Search",
    TACL), at the step level with a step-level scorer.

    One priority queue holds every open and finished path, best first by its score; at most
    B paths are expanded per depth (beam search's width). The score is the path's value
    capped by its parent's score, so it can only fall as a path grows (with ``aggregation``
    min, or product over values in [0, 1], and a scorer that values a prefix the same inside
    a longer path, it *is* the value). Under such a score the first finished path popped is
    beam search's best finished path (``final: best``, same B and M, same seed): nothing still
    open can end above it, so the search stops there, and the expansions beam search would
    have spent on lower paths are saved. Cost: one generation request of n=M and M scorer
    calls per expansion, one expansion at a time (no batching across the beam: fewer
    expansions, more latency). Knobs: ``beam_width`` (B), ``expansions`` (M), ``scorer``
    (and ``aggregation``), ``max_depth``, ``step_max_tokens``. Ties go to the earlier node id.
    """

    config_model = BestFirstBeamConfig
    description = "Beam search's best path by a priority queue; stops once no open path can win."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        score: dict[str, float] = {port.root.id: float("inf")}
        queue: list[tuple[float, tuple[int, ...], str]] = [(0.0, path_key(port.root.id), "r")]
        expanded_per_depth: Counter[int] = Counter()
        expanded: set[str] = set()
        best: Node | None = None
        exhausted = False
        while queue:
            _, _, node_id = heapq.heappop(queue)
            node = port.node(node_id)
            if node.terminal:
                best = node  # every open path scores at most this, and can only fall
                break
            if node.depth >= cfg.max_depth or expanded_per_depth[node.depth] >= cfg.beam_width:
                continue  # beam search would not keep it in its beam either
            expanded_per_depth[node.depth] += 1
            expanded.add(node.id)
            try:
                grown = await grow_step(port, node, cfg.expansions, cfg.scorer, cfg.step_max_tokens)
            except BudgetExhausted:
                exhausted = True
                break
            for child, value in grown:
                if value is None:
                    continue
                score[child.id] = min(value, score[node.id])
                heapq.heappush(queue, (-score[child.id], path_key(child.id), child.id))
        left_open = [
            port.node(i)
            for i in score
            if i not in expanded and i != port.root.id and not port.node(i).terminal
        ]
        port.prune(sorted(left_open, key=lambda n: path_key(n.id)))
        detail = {
            "expansions": sum(expanded_per_depth.values()),
            "stopped_early": best is not None and bool(queue),
            "budget_exhausted": exhausted,
        }
        if best is None:
            picked = self.select(port)
            return SearchResult(picked.answer, picked.node_id, {**detail, **picked.detail})
        return SearchResult(best.answer, best.id, {**detail, "value": score[best.id]})

    def select(self, tree: TreeView) -> SearchResult:
        """The best-valued finished path the tree holds (what the queue would pop first)."""
        picked = select_by_values(tree, self.config.scorer, "best")
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

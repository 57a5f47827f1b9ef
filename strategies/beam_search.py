"""Step-level beam search guided by a process reward model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.beam_refill import refill_beam
from branchwise.strategies.step_search import (
    FinalRule,
    choose_final,
    drop_duplicates,
    gather_within_budget,
    ranked,
    select_by_values,
)


class BeamSearchConfig(ScoredConfig):
    name: Literal["beam_search"] = "beam_search"
    beam_width: int = Field(
        4, ge=1, description="Open partial solutions kept after each step (B), refilled."
    )
    expansions: int = Field(4, ge=1, description="Next steps sampled per kept beam (M).")
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    final: FinalRule = Field(
        "best",
        description="Answer among every finished path collected: best (highest value), "
        "weighted_vote (answers weighted by value) or vote (one vote per finished path).",
    )
    merge_duplicates: bool = Field(
        False,
        description="Sibling steps with identical text count once (copies pruned unscored), so "
        "the beam holds distinct paths; off, copies of a good prefix draw more samples from it.",
    )
    refill: bool = Field(
        True,
        description="When fewer than B open paths are left, repeat them (best first) until the "
        "B slots are full, so each depth still samples B*M steps (search-and-learn's); false: "
        "the beam shrinks as paths finish (Branchwise's earlier behaviour).",
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


@dataclass
class BeamRun:
    """What one beam search left: its finished beams and every candidate's value."""

    finished: list[Node] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    depth: int = 0
    exhausted: bool = False

    def value(self, node: Node) -> float | None:
        return self.values.get(node.id)


async def run_beam(
    ctx: SearchPort,
    start: Node,
    *,
    width: int,
    expansions: int,
    scorer: str,
    max_depth: int,
    step_max_tokens: int | None,
    merge_duplicates: bool = False,
    collect_finished: bool = True,
    refill: bool = False,
    keep: Callable[[list[Node], int, Callable[[Node], float | None]], list[Node]] | None = None,
) -> BeamRun:
    """Beam search from ``start``; never raises BudgetExhausted (it stops and reports it).

    Each open beam is expanded and its children scored as soon as the beam is known, with
    no wait on its siblings; only the choice of the best ``width`` waits for the whole depth,
    because that choice needs every candidate of the depth (the one barrier beam search has).
    ``collect_finished`` (beam search, as search-and-learn does it): a finished candidate is
    collected and never takes a slot, the ``width`` slots are refilled from the open
    candidates, and the search runs until no open candidate is left. Otherwise (DVTS's
    greedy subtrees): finished candidates compete for slots with open ones; a finished beam
    that wins a slot stays finished (never expanded, never pruned), and the search ends when
    every slot holds a finished beam. ``refill``: too few open candidates are repeated to
    fill the ``width`` slots, a node in k slots drawing k * ``expansions`` children.
    ``keep`` (default: the first ``width``) picks the
    next beam from the candidates ranked best first, given their values; the ones it leaves
    are pruned.
    """
    run = BeamRun()
    beam = [start]
    finished_ids: set[str] = set()
    while not run.exhausted:
        growing = [n for n in beam if not n.terminal and n.depth < max_depth]
        if not growing:
            break
        slots: dict[str, int] = {}
        for node in growing:
            slots[node.id] = slots.get(node.id, 0) + 1
        unique = list({n.id: n for n in growing}.values())
        grown, run.exhausted = await gather_within_budget(
            [
                grow_step(
                    ctx,
                    node,
                    expansions * slots[node.id],
                    scorer,
                    step_max_tokens,
                    merge_duplicates,
                )
                for node in unique
            ]
        )
        candidates = [pair for pairs in grown if pairs for pair in pairs]
        run.values.update({n.id: v for n, v in candidates if v is not None})
        valued = [n for n, v in candidates if v is not None]
        if collect_finished:
            run.finished += sorted((n for n in valued if n.terminal), key=lambda n: path_key(n.id))
            pool = [n for n in valued if not n.terminal]
        else:
            pool = [n for n in beam if n.terminal] + valued
        order = ranked(pool, run.value)
        chosen = order[:width] if keep is None else keep(order, width, run.value)
        kept_ids = {n.id for n in chosen}
        beam = refill_beam(chosen, width) if refill else chosen
        ctx.prune([n for n in order if n.id not in kept_ids and n.id not in finished_ids])
        if not collect_finished:
            for node in beam:
                if node.terminal and node.id not in finished_ids:
                    finished_ids.add(node.id)
                    run.finished.append(node)
        run.depth += 1
    return run


async def grow_step(
    ctx: SearchPort,
    node: Node,
    expansions: int,
    scorer: str,
    step_max_tokens: int | None,
    merge_duplicates: bool = False,
) -> list[tuple[Node, float | None]]:
    """``expansions`` next steps of ``node`` with their values (children left unscored by a
    budget refusal are pruned before it is raised)."""
    children = await ctx.expand(node, expansions, max_tokens=step_max_tokens)
    if merge_duplicates:
        children = drop_duplicates(ctx, children)
    try:
        values = await ctx.values(children, scorer)
    except BudgetExhausted:
        ctx.prune(children)  # unscored children can never be chosen
        raise
    return list(zip(children, values, strict=True))


class BeamSearch(Strategy[BeamSearchConfig]):
    """PRM-guided step-level beam search (Snell et al. 2024, "Scaling LLM test-time compute";
    the bookkeeping of HF search-and-learn).

    Keep B open partial solutions; sample M next steps for each; score every new path with
    the step-level scorer and take its value (the one rule: ``aggregation``, if declared). A new
    path that finished is collected (it paid for its tokens and never competes for a slot);
    the B slots are refilled with the best open paths (with ``merge_duplicates``, identical
    sibling steps count once), and when fewer than B are open they are repeated, best first,
    until the B slots are full (``refill``, search-and-learn's), until no open path is left or
    ``max_depth``. The answer is
    chosen among *all* collected finished paths by ``final`` (best value, or a vote weighted
    by path value), so a bigger budget gives the vote more answers. Each beam is expanded and
    its children scored as soon as it is chosen; only the choice of the best B waits for the
    whole depth (the one barrier beam search has). Cost per depth: B generation requests of
    n=M (one step each) and B*M scorer calls. Hyperparameters: ``beam_width`` (B),
    ``expansions`` (M), ``scorer`` (and ``aggregation``), ``max_depth``, ``final``. Ties go
    to the earlier node id.
    """

    config_model = BeamSearchConfig
    description = "Step-level beam search: keep the B best partial paths by PRM score."

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        run = await run_beam(
            ctx,
            ctx.root,
            width=cfg.beam_width,
            expansions=cfg.expansions,
            scorer=cfg.scorer,
            max_depth=cfg.max_depth,
            step_max_tokens=cfg.step_max_tokens,
            merge_duplicates=cfg.merge_duplicates,
            refill=cfg.refill,
        )
        picked = choose_final(run.finished, run.value, cfg.final)
        detail = {
            "finished": len(run.finished),
            "depth": run.depth,
            "budget_exhausted": run.exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def select(self, tree: TreeView) -> SearchResult:
        """Among every finished path the tree holds, by ``final`` over stored values."""
        picked = select_by_values(tree, self.config.scorer, self.config.final)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

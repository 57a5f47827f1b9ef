"""Diverse verifier tree search: independent PRM-guided subtrees, then a vote across them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.beam_search import BeamRun, run_beam
from branchwise.strategies.step_search import (
    FinalRule,
    choose_final,
    gather_within_budget,
    ranked,
    select_by_values,
)


class DVTSConfig(ScoredConfig):
    name: Literal["dvts"] = "dvts"
    subtrees: int = Field(4, ge=1, description="Independent subtrees, all grown from the root.")
    expansions: int = Field(4, ge=1, description="Next steps sampled per kept node per step (M).")
    beam_width: int = Field(
        1, ge=1, description="Nodes each subtree keeps per step (1 = greedy, as in the paper)."
    )
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    merge_duplicates: bool = Field(
        False, description="Sibling steps with identical text count once (copies pruned unscored)."
    )
    final: FinalRule = Field(
        "weighted_vote",
        description="Across subtrees (one finished path each, its best): weighted_vote "
        "(answers weighted by path value), vote (one vote per subtree) or best.",
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


class DVTS(Strategy[DVTSConfig]):
    """Diverse verifier tree search (Beeching et al. 2024, HF "scaling test-time compute").

    One beam would let a few high-scoring prefixes crowd out the rest; DVTS instead splits
    the samples into ``subtrees`` independent searches from the root, each a PRM-guided beam
    search of width ``beam_width`` (greedy by default) with ``expansions`` samples per kept
    node and step. Subtrees run concurrently with no barrier between them. Each contributes
    its best finished path; the answer is a (weighted) vote or the best across subtrees.
    Cost per step: ``subtrees * beam_width`` requests of n=``expansions``, as many scorer calls
    as samples. Ties go to the earlier node id.
    """

    config_model = DVTSConfig
    description = "Independent greedy PRM-guided subtrees, then a vote across them."

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        runs, _ = await gather_within_budget(
            [
                run_beam(
                    ctx,
                    ctx.root,
                    width=cfg.beam_width,
                    expansions=cfg.expansions,
                    scorer=cfg.scorer,
                    max_depth=cfg.max_depth,
                    step_max_tokens=cfg.step_max_tokens,
                    merge_duplicates=cfg.merge_duplicates,
                    collect_finished=False,  # a subtree ends when its best path finishes
                )
                for _ in range(cfg.subtrees)
            ]
        )
        done = [run for run in runs if run is not None]
        leaders = [leader for run in done if (leader := _leader(run)) is not None]
        values = {n.id: v for run in done for n in run.finished if (v := run.value(n)) is not None}
        picked = choose_final(leaders, lambda n: values.get(n.id), cfg.final)
        detail = {
            "subtrees_finished": len(leaders),
            "budget_exhausted": any(run.exhausted for run in done),
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def select(self, tree: TreeView) -> SearchResult:
        """Among every finished path the tree holds, by ``final`` over stored values."""
        picked = select_by_values(tree, self.config.scorer, self.config.final)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))


def _leader(run: BeamRun) -> Node | None:
    """A subtree's best finished path with an answer."""
    answered = [n for n in run.finished if n.answer is not None]
    order = ranked(answered, run.value)
    return order[0] if order else None

"""Conditional Poisson stochastic beam search at the step level."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.beam_search import run_beam
from branchwise.strategies.conditional_poisson import conditional_poisson_sample
from branchwise.strategies.step_search import FinalRule, choose_final, select_by_values


class CPBeamConfig(ScoredConfig):
    name: Literal["cp_beam_search"] = "cp_beam_search"
    beam_width: int = Field(4, ge=1, description="Open paths sampled into the beam each step (K).")
    expansions: int = Field(4, ge=1, description="Next steps sampled per kept path (M).")
    weights: Literal["value", "logprob"] = Field(
        "value",
        description="A candidate's weight: its value to the power 1/temperature, or its path "
        "probability to the power 1/temperature (the paper's choice, from the policy alone).",
    )
    temperature: float = Field(
        0.1,
        gt=0.0,
        description="Sharpness of the weights; towards 0 the sample becomes the top K (beam "
        "search), larger values spread the beam over lower-valued paths.",
    )
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    final: FinalRule = Field(
        "best", description="Answer among every finished path: best, weighted_vote or vote."
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


class CPBeamSearch(Strategy[CPBeamConfig]):
    """Conditional Poisson stochastic beam search (Meister, Amini, Vieira and Cotterell 2021,
    "Conditional Poisson Stochastic Beam Search", EMNLP), at the step level.

    Beam search whose beam is *sampled*: at each depth, from the N open candidates (the M
    next steps of each kept path, valued by the step-level scorer), K are drawn without
    replacement under the conditional Poisson design, P(set) ∝ the product of its members'
    weights w = value^(1/T) (or path probability^(1/T)); exact, by the elementary symmetric
    polynomial recursion. Lower-valued paths keep a chance proportional to their weight, so
    the beam (and the finished paths collected, as in beam search) is more varied than the
    top K, and the kept sets support consistent Horvitz-Thompson estimates. As T -> 0 it is
    beam search. Cost per depth: K generation requests of n=M, K*M scorer calls, O(N*K) to
    sample. Knobs: ``beam_width`` (K), ``expansions`` (M), ``weights``, ``temperature`` (T),
    ``scorer`` (and ``aggregation``), ``max_depth``, ``final``. Draws use the search's rng
    over candidates in canonical order, so a seed gives the same beams.
    """

    config_model = CPBeamConfig
    description = "Beam search whose K kept paths are sampled by the conditional Poisson design."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config

        def keep(
            order: list[Node], width: int, value: Callable[[Node], float | None]
        ) -> list[Node]:
            log_w = [self._log_weight(n, value(n)) for n in order]
            return [order[i] for i in conditional_poisson_sample(log_w, width, port.rng)]

        run = await run_beam(
            port,
            port.root,
            width=cfg.beam_width,
            expansions=cfg.expansions,
            scorer=cfg.scorer,
            max_depth=cfg.max_depth,
            step_max_tokens=cfg.step_max_tokens,
            keep=keep,
        )
        picked = choose_final(run.finished, run.value, cfg.final)
        detail = {
            "finished": len(run.finished),
            "distinct_answers": len({n.answer for n in run.finished if n.answer is not None}),
            "depth": run.depth,
            "budget_exhausted": run.exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _log_weight(self, node: Node, value: float | None) -> float:
        cfg = self.config
        if cfg.weights == "logprob":
            return node.cum_logprob / cfg.temperature
        if value is None or value <= 0.0:
            return float("-inf")
        return math.log(value) / cfg.temperature

    def select(self, tree: TreeView) -> SearchResult:
        """Among every finished path the tree holds, by ``final`` over stored values."""
        picked = select_by_values(tree, self.config.scorer, self.config.final)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

"""Particle filtering over reasoning steps, with PRM scores as likelihoods."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from core.errors import BudgetExhausted
from core.graph import Node, path_key
from rewards.aggregate import Aggregation
from strategies.base import SearchResult, Strategy, StrategyConfig
from strategies.resampling import (
    effective_sample_size,
    multinomial_resample,
    softmax,
    systematic_resample,
)
from strategies.selection import Selection
from strategies.step_search import FinalRule, choose_final, path_values, settle
from strategies.step_search import stored_value as _stored

if TYPE_CHECKING:
    from orchestrator.context import SearchContext


class ParticleFilterConfig(StrategyConfig):
    name: Literal["particle_filter"] = "particle_filter"
    particles: int = Field(8, ge=1, description="Number of particles (N).")
    scorer: str = Field(description="Step-level scorer (by recipe name) giving the likelihoods.")
    aggregation: Aggregation = Field(
        "last", description="How a prefix's step scores become its score (default: last step)."
    )
    temperature: float = Field(
        1.0, gt=0, description="Weights are softmax(logit(score) / temperature) over particles."
    )
    ess_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Resample when the effective sample size is below this share of the "
        "particles still running (0 never resamples).",
    )
    resampling: Literal["systematic", "multinomial"] = Field(
        "systematic", description="How ancestors are drawn when resampling."
    )
    score_clip: float = Field(
        1e-4,
        gt=0,
        lt=0.5,
        description="Scores are kept in [clip, 1 - clip] before the logit, so 0 and 1 stay finite.",
    )
    max_depth: int = Field(16, ge=1, description="Most steps a particle may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    final: FinalRule = Field(
        "weighted_vote",
        description="Answer among finished particles: weighted_vote (by particle weight), "
        "best (highest score) or vote.",
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


def log_weight(score: float, temperature: float, clip: float) -> float:
    """logit(score) / temperature, with the score kept in [clip, 1 - clip] so it stays finite."""
    p = min(max(score, clip), 1.0 - clip)
    return math.log(p / (1.0 - p)) / temperature


class ParticleFilter(Strategy):
    """Particle filtering (Puri et al. 2025, "A probabilistic inference approach to inference-time
    scaling of LLMs using particle-based Monte Carlo methods").

    N particles each advance one step at a time, concurrently (particles sharing a node share
    one request with n = their count). A step-level scorer judges each new prefix; its score s
    becomes the weight softmax(logit(s) / temperature) over the running particles. Because the
    scorer judges the whole prefix, the weight is the current prefix's potential, not a product
    carried over steps. When the effective sample size falls below ``ess_threshold`` times the
    running particles, they are resampled (systematic or multinomial) in proportion to their
    weights, which keeps sampling from the posterior instead of chasing the mode. Finished
    particles are frozen: they keep their slot, are never drawn by resampling and never
    replaced. A particle whose score failed gets no weight and waits to be replaced at the next
    resampling. Cost per step: at most N one-step samples and N scorer calls. The answer is a
    weight-weighted vote over finished particles (or the best one).
    """

    config_model = ParticleFilterConfig
    description = "Particle filtering: N particles, PRM weights, resampling when ESS is low."

    def __init__(self, config: ParticleFilterConfig) -> None:
        super().__init__(config)
        self.cfg = config

    async def search(self, ctx: SearchContext) -> SearchResult:
        cfg = self.cfg
        slots: list[Node] = [ctx.root] * cfg.particles
        finished: set[int] = set()
        waiting: set[int] = set()  # failed score: no weight until resampling replaces them
        history: list[float] = []
        resamples = 0
        exhausted = False
        while not exhausted:
            moving = [
                i
                for i in range(cfg.particles)
                if i not in finished and i not in waiting and slots[i].depth < cfg.max_depth
            ]
            if not moving:
                break
            moved, exhausted = await self._advance(ctx, slots, moving)
            try:
                values = await path_values(
                    ctx, [slots[i] for i in moved], cfg.scorer, cfg.aggregation
                )
            except BudgetExhausted:
                break
            for i, value in zip(moved, values, strict=True):
                if value is None:
                    waiting.add(i)
                elif slots[i].terminal:
                    finished.add(i)
            running = [i for i in moved if i not in finished and i not in waiting]
            if not running:
                continue
            weights = softmax([self._log_weight(ctx, slots[i]) for i in running])
            ess = effective_sample_size(weights)
            history.append(round(ess, 4))
            if ess < cfg.ess_threshold * len(running):
                targets = sorted(running + sorted(waiting))
                self._resample(ctx, slots, running, weights, targets)
                waiting.clear()
                resamples += 1
        picked = self._final(ctx, [slots[i] for i in sorted(finished)])
        detail = {
            "finished": len(finished),
            "resamples": resamples,
            "ess": history,
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    async def _advance(
        self, ctx: SearchContext, slots: list[Node], moving: list[int]
    ) -> tuple[list[int], bool]:
        """One step for every moving particle; returns the slots that moved."""
        groups: dict[str, list[int]] = {}
        for i in moving:
            groups.setdefault(slots[i].id, []).append(i)
        order = sorted(groups, key=path_key)
        results, exhausted = await settle(
            [
                ctx.expand(
                    ctx.graph.node(node_id),
                    len(groups[node_id]),
                    max_tokens=self.cfg.step_max_tokens,
                )
                for node_id in order
            ]
        )
        moved: list[int] = []
        for node_id, children in zip(order, results, strict=True):
            for i, child in zip(groups[node_id], children or [], strict=False):
                slots[i] = child
                moved.append(i)
        return sorted(moved), exhausted

    def _resample(
        self,
        ctx: SearchContext,
        slots: list[Node],
        running: list[int],
        weights: list[float],
        targets: list[int],
    ) -> None:
        """Refill ``targets`` (running and waiting slots) with ancestors drawn from ``running``."""
        draw = systematic_resample if self.cfg.resampling == "systematic" else multinomial_resample
        ancestors = draw(weights, len(targets), ctx.rng)
        sources = [slots[running[a]] for a in ancestors]  # read every ancestor before writing
        dropped = {slots[i].id: slots[i] for i in running}
        for slot, node in zip(targets, sources, strict=True):
            slots[slot] = node
        for node in sources:
            dropped.pop(node.id, None)
        ctx.prune([dropped[node_id] for node_id in sorted(dropped, key=path_key)])

    def _log_weight(self, ctx: SearchContext, node: Node) -> float:
        value = _stored(ctx, node, self.cfg.scorer, self.cfg.aggregation)
        assert value is not None  # only scored particles are weighed
        return log_weight(value, self.cfg.temperature, self.cfg.score_clip)

    def _final(self, ctx: SearchContext, finished: list[Node]) -> Selection:
        cfg = self.cfg
        scored = [n for n in finished if _stored(ctx, n, cfg.scorer, cfg.aggregation) is not None]
        if cfg.final == "best":
            return choose_final(
                scored, lambda n: _stored(ctx, n, cfg.scorer, cfg.aggregation), "best"
            )
        weights = softmax([self._log_weight(ctx, n) for n in scored])
        by_id = {n.id: w for n, w in zip(scored, weights, strict=True)}
        return choose_final(scored, lambda n: by_id.get(n.id), cfg.final)

    def anytime(self, ctx: SearchContext) -> SearchResult:
        picked = self._final(ctx, ctx.graph.terminals())
        return SearchResult(picked.answer, picked.node_id, {"anytime": True, **picked.detail})

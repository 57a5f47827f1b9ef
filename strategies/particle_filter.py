"""Particle filtering over reasoning steps, with PRM scores as likelihoods."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.core.values import Aggregation
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.particle_weights import (
    FinalSweeps,
    ReferenceWeight,
    WeightCarry,
    answer_pool,
    next_log_weight,
)
from branchwise.strategies.resampling import (
    effective_sample_size,
    multinomial_resample,
    normalise,
    softmax,
    systematic_resample,
)
from branchwise.strategies.selection import Selection, majority_vote, weighted_vote
from branchwise.strategies.step_search import FinalRule, choose_final, gather_within_budget


class ParticleFilterConfig(ScoredConfig):
    name: Literal["particle_filter"] = "particle_filter"
    particles: int = Field(8, ge=1, description="Number of particles (N).")
    aggregation: Aggregation | None = Field(
        "last",
        description="How a prefix's step values become its likelihood's score; the paper "
        "weighs a particle by its latest step (last). Null: the scorer's own value.",
    )
    temperature: float = Field(
        1.0, gt=0, description="Weights are softmax(logit(score) / temperature) over particles."
    )
    schedule: Literal["every_step", "adaptive"] = Field(
        "every_step",
        description="every_step: resample after every step with weights from the latest step "
        "reward (Puri et al.); adaptive: carry importance weights across steps (see "
        "`adaptive_weight`) and resample only when the ESS falls below `ess_threshold`.",
    )
    adaptive_weight: WeightCarry = Field(
        "incremental",
        description="adaptive: what a step adds to a particle's log weight: incremental (its "
        "potential logit(value)/temperature minus the one at its last weighing, the proper "
        "importance weight of a path value) or product (the whole potential at every step, "
        "Branchwise's earlier rule, which counts earlier steps again under min or product "
        "aggregation and re-weighs finished particles).",
    )
    ess_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="adaptive: resample when the effective sample size is below this share of "
        "the particles (0 never resamples).",
    )
    resampling: Literal["systematic", "multinomial"] = Field(
        "multinomial",
        description="How ancestors are drawn: multinomial (the paper's), or systematic "
        "(lower variance).",
    )
    sweeps: int = Field(
        1,
        ge=1,
        description="Particle Gibbs sweeps (Puri et al.'s PG): each sweep after the first runs "
        "the filter again with one reference particle, drawn from the previous sweep's final "
        "particles by weight, kept through every resampling (conditional SMC); 1 = plain "
        "particle filtering. Cost grows linearly with sweeps.",
    )
    final_sweeps: FinalSweeps = Field(
        "last",
        description="Particle Gibbs: answer from the last sweep's particles (its_hub's) or from "
        "all sweeps' (each sweep's reference left out: it is the sweep before's particle).",
    )
    reference_weight: ReferenceWeight = Field(
        "final",
        description="Particle Gibbs: the reference particle's weight at every resampling: "
        "final (its finished path's, as its_hub weighs it) or step (its prefix's at that step, "
        "conditional SMC's, Branchwise's earlier rule).",
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

    @model_validator(mode="after")
    def _gibbs_has_free_particles(self) -> ParticleFilterConfig:
        if self.sweeps > 1 and self.particles < 2:
            raise ValueError(
                f"particle Gibbs (sweeps {self.sweeps}) needs particles >= 2: one is the "
                f"reference, got particles {self.particles}"
            )
        return self


def log_weight(score: float, temperature: float, clip: float) -> float:
    """logit(score) / temperature, with the score kept in [clip, 1 - clip] so it stays finite."""
    p = min(max(score, clip), 1.0 - clip)
    return math.log(p / (1.0 - p)) / temperature


@dataclass
class Sweep:
    """One run of the filter: its particles' current nodes and log importance weights.

    Slot 0 holds the reference particle when there is one (its path is fixed in advance).
    """

    slots: list[Node]
    log_weights: list[float]
    reference: list[Node] = field(default_factory=list)  # path below the root, for PG
    dead: set[int] = field(default_factory=set)  # a failed score: weight zero
    potentials: list[float] = field(default_factory=list)  # at each slot's last weighing
    step: int = 0
    resamples: int = 0
    ess: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.potentials = self.potentials or [0.0] * len(self.slots)

    @property
    def free(self) -> list[int]:
        """Slots the filter samples (all but the reference)."""
        return list(range(1 if self.reference else 0, len(self.slots)))


class ParticleFilter(Strategy[ParticleFilterConfig]):
    """Particle filtering and particle Gibbs (Puri et al. 2025, "A probabilistic inference
    approach to inference-time scaling of LLMs using particle-based Monte Carlo methods").

    N particles each advance one step at a time, concurrently (particles sharing a node share
    one request with n = their count). A step-level scorer judges each new prefix; its score
    s gives the step's likelihood exp(logit(s) / temperature). By default (``schedule:
    every_step``, the paper's algorithm) every step ends with resampling all N particles in
    proportion to that likelihood of their latest step, finished particles included (weighed
    by their final score, as in the paper's code; a finished particle drawn twice is simply
    kept twice, one drawn zero times is pruned). With ``schedule: adaptive`` the importance
    weight carries across steps (each step multiplies it by the step's likelihood) and the
    particles are resampled, and their weights reset, only when the effective sample size
    falls below ``ess_threshold`` * N. A particle whose score failed gets weight zero. With
    ``sweeps`` > 1 this is particle Gibbs: each later sweep keeps one reference particle,
    drawn from the previous sweep's final particles by weight, whose path is fixed; at step t
    it stands at its t-th step with that step's (memoised) score, takes part in resampling,
    and a free particle that draws it continues from that prefix; in resampling it weighs
    with its finished path's likelihood (``reference_weight: final``, its_hub's) or its
    prefix's (``step``). The adaptive schedule carries the incremental potential (this
    value's likelihood against the last, ``adaptive_weight``). Cost per step: at most N
    one-step samples and N scorer calls, per sweep. The answer is a vote over the last
    sweep's final particles (``final_sweeps: all`` pools every sweep's, each reference once),
    each weighted by its final step's likelihood (or the best one).
    """

    config_model = ParticleFilterConfig
    description = "Particle filtering / Gibbs: N particles, PRM likelihoods, resampling."

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        sweeps: list[tuple[list[Node], Node | None]] = []
        reference: list[Node] = []
        history: list[float] = []  # the ESS after each step, sweep after sweep
        resamples, exhausted, done = 0, False, 0
        references: list[str] = []
        for _ in range(cfg.sweeps):
            sweep = self._start(ctx, reference)
            exhausted = await self._run(ctx, sweep)
            particles = [n for i, n in enumerate(sweep.slots) if i not in sweep.dead]
            held = sweep.slots[0] if sweep.reference and 0 not in sweep.dead else None
            sweeps.append(([n for n in particles if n is not held], held))
            resamples += sweep.resamples
            history += sweep.ess
            done += 1
            if exhausted or not particles:
                break
            reference = self._draw_reference(ctx, particles)
            references.append(reference[-1].id)
        final = answer_pool(sweeps, cfg.final_sweeps)
        picked = self._final(ctx, [n for n in final if n.terminal])
        detail = {
            "finished": sum(1 for n in final if n.terminal),
            "sweeps": done,
            "references": references[: max(0, done - 1)],
            "resamples": resamples,
            "ess": history,
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _start(self, ctx: SearchPort, reference: list[Node]) -> Sweep:
        slots = [ctx.root] * self.config.particles
        return Sweep(slots=slots, log_weights=[0.0] * len(slots), reference=reference)

    async def _run(self, ctx: SearchPort, sweep: Sweep) -> bool:
        """Advance, weigh and resample until no particle moves; True if the budget ran out."""
        cfg = self.config
        while True:
            moving = [i for i in sweep.free if i not in sweep.dead and self._open(sweep.slots[i])]
            ref_moves = bool(sweep.reference) and sweep.step < len(sweep.reference)
            if not moving and not ref_moves:
                return False
            sweep.step += 1
            moved, exhausted = await self._advance(ctx, sweep.slots, moving)
            if sweep.reference:
                sweep.slots[0] = sweep.reference[min(sweep.step, len(sweep.reference)) - 1]
            try:
                values = await ctx.values([sweep.slots[i] for i in moved], cfg.scorer)
            except BudgetExhausted:
                return True
            sweep.dead.update(i for i, v in zip(moved, values, strict=True) if v is None)
            sweep.dead.update(i for i in moving if i not in moved)  # refused by the budget
            self._weigh(ctx, sweep)
            live = [i for i in range(len(sweep.slots)) if i not in sweep.dead]
            if not live:
                return exhausted
            weights = _normalised(sweep.log_weights, sweep.dead)
            ess = effective_sample_size(weights)
            sweep.ess.append(round(ess, 4))
            due = cfg.schedule == "every_step" or ess < cfg.ess_threshold * len(sweep.slots)
            if due:
                self._resample(ctx, sweep, weights)
            if exhausted:
                return True

    def _open(self, node: Node) -> bool:
        return not node.terminal and node.depth < self.config.max_depth

    def _weigh(self, ctx: SearchPort, sweep: Sweep) -> None:
        """Multiply each live particle's weight by the likelihood of its latest step."""
        cfg = self.config
        carry = cfg.adaptive_weight if cfg.schedule == "adaptive" else None
        for i, node in enumerate(sweep.slots):
            if i in sweep.dead:
                continue
            value = ctx.value(node, cfg.scorer)
            if value is None:  # the root, for a reference that has not started: no step yet
                continue
            potential = log_weight(value, cfg.temperature, cfg.score_clip)
            if i == 0 and sweep.reference and cfg.reference_weight == "final":
                # its_hub weighs its (finished) reference by its final value at every step
                sweep.log_weights[i] = self._log_weight(ctx, sweep.reference[-1])
            else:
                sweep.log_weights[i] = next_log_weight(
                    sweep.log_weights[i], potential, sweep.potentials[i], carry=carry
                )
            sweep.potentials[i] = potential

    def _resample(self, ctx: SearchPort, sweep: Sweep, weights: list[float]) -> None:
        """Refill the free slots with ancestors drawn from all particles by weight."""
        draw = (
            systematic_resample if self.config.resampling == "systematic" else multinomial_resample
        )
        free = sweep.free
        ancestors = draw(weights, len(free), ctx.rng)
        before, potentials = list(sweep.slots), list(sweep.potentials)
        for slot, ancestor in zip(free, ancestors, strict=True):
            sweep.slots[slot] = before[ancestor]
            sweep.potentials[slot] = potentials[ancestor]
        kept = {n.id for n in sweep.slots}
        keep = {n.id for n in sweep.reference}
        dropped = {n.id: n for n in before if n.id not in kept and n.id not in keep}
        dropped.pop(ctx.root.id, None)
        ctx.prune([dropped[node_id] for node_id in sorted(dropped, key=path_key)])
        sweep.dead.clear()  # every free slot now holds a drawn (live) particle
        sweep.log_weights = [0.0] * len(sweep.slots)
        sweep.resamples += 1

    def _draw_reference(self, ctx: SearchPort, particles: list[Node]) -> list[Node]:
        """The next sweep's reference: a final particle drawn by weight, as its path."""
        weights = softmax([self._log_weight(ctx, n) for n in particles])
        [index] = multinomial_resample(weights, 1, ctx.rng)
        return ctx.path(particles[index])[1:]

    async def _advance(
        self, ctx: SearchPort, slots: list[Node], moving: list[int]
    ) -> tuple[list[int], bool]:
        """One step for every moving particle; returns the slots that moved."""
        groups: dict[str, list[int]] = {}
        for i in moving:
            groups.setdefault(slots[i].id, []).append(i)
        order = sorted(groups, key=path_key)
        results, exhausted = await gather_within_budget(
            [
                ctx.expand(
                    ctx.node(node_id),
                    len(groups[node_id]),
                    max_tokens=self.config.step_max_tokens,
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

    def _log_weight(self, ctx: TreeView, node: Node) -> float:
        value = ctx.value(node, self.config.scorer)
        assert value is not None  # only scored particles are weighed
        return log_weight(value, self.config.temperature, self.config.score_clip)

    def _final(self, ctx: TreeView, finished: list[Node]) -> Selection:
        cfg = self.config
        scored = [n for n in finished if ctx.value(n, self.config.scorer) is not None]
        scored.sort(key=lambda n: path_key(n.id))
        if cfg.final == "best":
            return choose_final(scored, lambda n: ctx.value(n, self.config.scorer), "best")
        if cfg.final == "vote":
            return majority_vote([n for n in scored if n.answer is not None])
        # one weight per particle: a finished path drawn k times carries k votes
        weights = softmax([self._log_weight(ctx, n) for n in scored])
        by_id = {n.id: w for n, w in zip(scored, weights, strict=True)}
        return weighted_vote(scored, lambda n: by_id[n.id])

    def select(self, tree: TreeView) -> SearchResult:
        """By ``final`` among every finished particle the tree holds."""
        picked = self._final(tree, tree.terminals())
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))


def _normalised(log_weights: list[float], dead: set[int]) -> list[float]:
    """exp(log weights) normalised, dead particles at zero."""
    live = [w for i, w in enumerate(log_weights) if i not in dead]
    top = max(live)
    return normalise([0.0 if i in dead else math.exp(w - top) for i, w in enumerate(log_weights)])

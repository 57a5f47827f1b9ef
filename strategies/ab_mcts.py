"""AB-MCTS: adaptive branching tree search ("wider or deeper") with Thompson sampling."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.step_search import FinalRule, choose_final, gather_within_budget
from branchwise.strategies.thompson import Distribution, Posterior, PosteriorFactory


class ABMCTSBaseConfig(ScoredConfig):
    """The fields AB-MCTS-A and AB-MCTS-M share."""

    iterations: int = Field(32, ge=1, description="Nodes generated in all (one per GEN decision).")
    verifier: str | None = Field(
        None, description="Scorer judging finished paths instead of `scorer` (e.g. a verifier)."
    )
    rollout: bool = Field(
        True,
        description="Score a new step by one sampled completion to the end (judged as a finished "
        "path), so scores at every depth are scores of whole answers; false: score the partial "
        "path with `scorer`.",
    )
    rollout_max_tokens: int | None = Field(
        None, ge=1, description="Token cap of a rollout (default: sampling.max_tokens)."
    )
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    parallel: int = Field(
        1,
        ge=1,
        description="Decisions per wave (drawn before any result; same node = one request).",
    )
    final: FinalRule = Field(
        "best", description="Answer among finished paths: best, weighted_vote or vote."
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        # with rollouts, `scorer` only ever values finished rollouts (a test-based judge works)
        return () if self.rollout else ("scorer",)


class ABMCTSConfig(ABMCTSBaseConfig):
    name: Literal["ab_mcts"] = "ab_mcts"
    distribution: Distribution = Field(
        "gaussian",
        description="Posterior family of the scores: gaussian, or beta (scores in [0,1]).",
    )
    prior_mean: float = Field(0.0, description="Gaussian prior mean m.")
    prior_kappa: float = Field(1.0, gt=0, description="Gaussian prior pseudo-count of the mean.")
    prior_nu: float = Field(1.0, gt=0, description="Gaussian prior degrees of freedom.")
    prior_tau2: float = Field(0.1, gt=0, description="Gaussian prior scale of the variance.")
    prior_a: float = Field(0.5, gt=0, description="Beta prior a (0.5, 0.5 = Jeffreys).")
    prior_b: float = Field(0.5, gt=0, description="Beta prior b.")


class BranchPolicy(Protocol):
    """How AB-MCTS decides at a node between a new child (GEN) and an existing one (CONT)."""

    def choose(self, node_id: str, expandable: list[str], rng: random.Random) -> str | None:
        """None for GEN (wider), else the expandable child to descend into (deeper)."""
        ...

    def record(self, path: list[str], child_id: str, score: float) -> None:
        """A new scored child of ``path[-1]``; ``path`` runs from the root to that parent."""
        ...


@dataclass
class NodeBelief:
    """A node's options: GEN (a new child here) against CONT (go into an existing child)."""

    gen: Posterior
    cont: Posterior
    child: dict[str, Posterior] = field(default_factory=dict)


def choose_action(belief: NodeBelief, expandable: list[str], rng: random.Random) -> str | None:
    """Thompson sampling: None means GEN (wider), a child id means CONT into it (deeper).

    Draw once from GEN and once from CONT; if CONT wins, draw once from each expandable
    child's posterior and take the highest. Ties go to GEN, then to the earlier child.
    """
    if not expandable:
        return None
    gen, cont = belief.gen.sample(rng), belief.cont.sample(rng)
    if gen >= cont:
        return None
    ordered = sorted(expandable, key=path_key)
    draws = [belief.child[c].sample(rng) for c in ordered]
    best = max(range(len(ordered)), key=lambda i: (draws[i], -i))
    return ordered[best]


class NodeAggregation:
    """AB-MCTS-A's policy: GEN and CONT nodes with their own posteriors at every node.

    GEN's posterior holds the scores of the children generated at the node; each child's
    posterior holds its own score and every score generated below it; CONT's posterior holds
    the scores generated below the node's children.
    """

    def __init__(self, prior: PosteriorFactory, root_id: str) -> None:
        self.prior = prior
        self.beliefs = {root_id: NodeBelief(prior(), prior())}

    def choose(self, node_id: str, expandable: list[str], rng: random.Random) -> str | None:
        return choose_action(self.beliefs[node_id], expandable, rng)

    def record(self, path: list[str], child_id: str, score: float) -> None:
        self.beliefs[child_id] = NodeBelief(self.prior(), self.prior())
        parent = self.beliefs[path[-1]]
        parent.gen.observe(score)
        parent.child[child_id] = self.prior()
        parent.child[child_id].observe(score)
        for above, below in zip(path[-2::-1], path[:0:-1], strict=True):
            self.beliefs[above].child[below].observe(score)
            self.beliefs[above].cont.observe(score)


ConfigT = TypeVar("ConfigT", bound=ABMCTSBaseConfig)


class AdaptiveBranchingSearch(Strategy[ConfigT], ABC):
    """The search AB-MCTS-A and AB-MCTS-M share; they differ in their :meth:`policy`.

    See :class:`ABMCTS` for the search itself.
    """

    @abstractmethod
    def policy(self, root_id: str) -> BranchPolicy:
        """A fresh wider-or-deeper policy for one search."""

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        policy = self.policy(ctx.root.id)
        children: dict[str, list[str]] = {}
        finished: list[Node] = []
        # wider: GEN at a node that already has children; deeper: CONT steps taken
        generated, widen, deepen, exhausted = 0, 0, 0, False
        while generated < cfg.iterations and not exhausted:
            targets: dict[str, int] = {}
            for _ in range(min(cfg.parallel, cfg.iterations - generated)):
                node_id, steps = self._descend(ctx, policy, children)
                targets[node_id] = targets.get(node_id, 0) + 1
                deepen += steps
                widen += 1 if children.get(node_id) else 0
            order = sorted(targets, key=path_key)
            batches, exhausted = await gather_within_budget(
                [self._generate(ctx, n, targets[n]) for n in order]
            )
            generated += sum(targets.values())
            for parent_id, batch in zip(order, batches, strict=True):
                for child, score, end in batch or []:
                    self._record(ctx, policy, children, parent_id, child, score)
                    if end is not None:
                        finished.append(end)
        picked = choose_final(finished, self._value(ctx), cfg.final)
        detail = {
            "generated": generated,
            "wider": widen,
            "deeper": deepen,
            "finished": len(finished),
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _descend(
        self, ctx: SearchPort, policy: BranchPolicy, children: dict[str, list[str]]
    ) -> tuple[str, int]:
        """Walk down by Thompson decisions to the node that gets a new child."""
        node_id, steps = ctx.root.id, 0
        while True:
            expandable = [c for c in children.get(node_id, []) if self._expandable(ctx, c)]
            choice = policy.choose(node_id, expandable, ctx.rng)
            if choice is None:
                return node_id, steps
            node_id, steps = choice, steps + 1

    def _expandable(self, ctx: SearchPort, node_id: str) -> bool:
        node = ctx.node(node_id)
        return not node.terminal and node.depth < self.config.max_depth

    async def _generate(
        self, ctx: SearchPort, node_id: str, count: int
    ) -> list[tuple[Node, float, Node | None]]:
        """``count`` new children of a node: (child, score, finished path it was judged on)."""
        cfg = self.config
        new = await ctx.expand(ctx.node(node_id), count, max_tokens=cfg.step_max_tokens)
        ends = {c.id: c for c in new if c.terminal}
        steps = [c for c in new if not c.terminal]
        try:
            if cfg.rollout and steps:
                rolled, exhausted = await gather_within_budget(
                    [
                        ctx.expand(c, 1, one_step=False, max_tokens=cfg.rollout_max_tokens)
                        for c in steps
                    ]
                )
                if exhausted:
                    raise BudgetExhausted(
                        "rollout refused by the budget", problem_id=ctx.problem_id
                    )
                ends.update({c.id: r[0] for c, r in zip(steps, rolled, strict=True) if r})
                steps = []
            judged = list(ends.values())
            values = dict(
                zip(
                    [n.id for n in judged + steps],
                    await ctx.values(judged, cfg.verifier or cfg.scorer)
                    + await ctx.values(steps, cfg.scorer),
                    strict=True,
                )
            )
        except BudgetExhausted:
            ctx.prune(new)  # never scored, never part of the tree
            raise
        out: list[tuple[Node, float, Node | None]] = []
        for child in new:
            end = ends.get(child.id)
            value = values[end.id if end is not None else child.id]
            if value is not None:
                out.append((child, value, end))
        return out

    def _record(
        self,
        ctx: SearchPort,
        policy: BranchPolicy,
        children: dict[str, list[str]],
        parent_id: str,
        child: Node,
        score: float,
    ) -> None:
        """Add a scored child to the tree and let the policy learn its score."""
        children.setdefault(parent_id, []).append(child.id)
        policy.record([n.id for n in ctx.path(ctx.node(parent_id))], child.id, score)

    def _value(self, tree: TreeView) -> Callable[[Node], float | None]:
        judge = self.config.verifier or self.config.scorer
        return lambda n: tree.value(n, judge)

    def select(self, tree: TreeView) -> SearchResult:
        """Among every finished path the tree holds, by ``final`` over stored values."""
        picked = choose_final(tree.terminals(), self._value(tree), self.config.final)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))


class ABMCTS(AdaptiveBranchingSearch[ABMCTSConfig]):
    """AB-MCTS-A, adaptive branching MCTS with node aggregation (Inoue et al. 2025, "Wider or
    deeper? Scaling LLM inference-time compute with adaptive branching tree search").

    From the root, each node decides by Thompson sampling between GEN, sampling a new child
    here (wider), and CONT, descending into an existing child (deeper), where a second
    Thompson draw over the children's posteriors picks which one. GEN's posterior holds the
    scores of the children generated at the node; each child's posterior holds its own score and
    every score generated below it; CONT's posterior holds the scores generated below the
    node's children. Posteriors are Gaussian (normal-inverse-chi-squared) or Beta, with the
    reference implementation's default priors. Adapted to steps: the paper's nodes are whole
    answers refined with feedback; here a child is one next step and, with ``rollout`` (the
    default), its score is that of one sampled completion from it to the end, judged by
    ``verifier`` (or ``scorer``). So every iteration yields a whole answer, scores at all depths
    are comparable, and GEN at the root alone is repeated sampling, which AB-MCTS generalises;
    deeper keeps a prefix that scored well and resamples the rest, our stand-in for
    refinement. Without rollouts the partial path is scored by ``scorer``, and path scores that
    fall with depth make the tree wide. Finished or depth-capped children are never descended
    into. Cost per iteration: one one-step sample, one rollout and one scorer call.
    ``parallel`` decisions per wave are drawn before any result and applied in decision order,
    so the tree depends on the seed only. AB-MCTS-M (``ab_mcts_m``) replaces the per-node
    posteriors with a mixed-effects model over the children (strategies/ab_mcts_m.py).
    """

    config_model = ABMCTSConfig
    description = "AB-MCTS: Thompson sampling decides between a new child and going deeper."

    def policy(self, root_id: str) -> BranchPolicy:
        """A fresh policy for one search."""
        config = self.config
        prior = PosteriorFactory(
            config.distribution,
            beta_a=config.prior_a,
            beta_b=config.prior_b,
            mean=config.prior_mean,
            kappa=config.prior_kappa,
            nu=config.prior_nu,
            tau2=config.prior_tau2,
        )
        return NodeAggregation(prior, root_id)

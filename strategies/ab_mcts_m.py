"""AB-MCTS-M: adaptive branching tree search with a mixed-effects model over the children."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from branchwise.core.graph import path_key
from branchwise.strategies.ab_mcts import ABMCTSBaseConfig, AdaptiveBranchingSearch, BranchPolicy
from branchwise.strategies.ab_mcts_m_posterior import (
    Draws,
    GroupPosterior,
    HalfNormalPrior,
    Pruning,
    is_prunable,
    pick_option,
)
from branchwise.strategies.mixed_model import MixedPrior, draw_group_means


class ABMCTSMConfig(ABMCTSBaseConfig):
    name: Literal["ab_mcts_m"] = "ab_mcts_m"
    model: Literal["half_normal", "conjugate"] = Field(
        "half_normal",
        description="half_normal: the reference's (treequest's) model, sigma_a ~ "
        "HalfNormal(group_sd), sigma_y ~ HalfNormal(noise_sd), sampled exactly on a grid "
        "(strategies/ab_mcts_m_posterior.py); conjugate: scaled-inverse-chi-squared variances "
        "sampled by `gibbs_sweeps` Gibbs sweeps (Branchwise's earlier model).",
    )
    draws: Draws = Field(
        "predictive",
        description="What Thompson sampling compares: predictive (the reference's: a draw of "
        "a new score of each child and of a new child) or mean (a draw of each child's mean "
        "and of a new child's mean).",
    )
    prune_subtrees: bool = Field(
        True,
        description="The reference's pruning: never descend into a child whose subtree holds "
        "at least `prune_min_size` scores, a share `prune_same_share` of them equal.",
    )
    prune_min_size: int = Field(4, ge=1, description="Smallest subtree that may be pruned.")
    prune_same_share: float = Field(
        0.75, gt=0, le=1, description="Share of equal scores (to two decimals) that prunes."
    )
    prior_mean: float = Field(0.5, description="Prior mean m0 of the population mean score mu.")
    prior_mean_sd: float = Field(0.2, gt=0, description="Prior standard deviation of mu.")
    group_sd: float = Field(
        0.2, gt=0, description="half_normal: HalfNormal scale of sigma_a (between children)."
    )
    noise_sd: float = Field(
        0.3, gt=0, description="half_normal: HalfNormal scale of sigma_y (within a child)."
    )
    group_nu: float = Field(
        1.0, gt=0, description="conjugate: prior degrees of freedom of sigma_a^2."
    )
    group_tau2: float = Field(
        0.05,
        gt=0,
        description="conjugate: prior scale of sigma_a^2, the spread between children's means.",
    )
    noise_nu: float = Field(
        1.0, gt=0, description="conjugate: prior degrees of freedom of sigma_y^2."
    )
    noise_tau2: float = Field(
        0.05,
        gt=0,
        description="conjugate: prior scale of sigma_y^2, the spread of scores within a child.",
    )
    gibbs_sweeps: int = Field(
        16, ge=1, le=1000, description="conjugate: Gibbs sweeps per decision (one posterior draw)."
    )


class MixedModelPolicy:
    """AB-MCTS-M's policy: at a node, every child is a group of the scores in its subtree.

    A joint posterior draw of the mixed model gives each child's mean and, for GEN, the
    mean of a new group drawn from the population; Thompson sampling takes the highest
    (ties to GEN, then to the earlier child). Only expandable children compete; the others
    still inform the population.
    """

    def __init__(
        self,
        prior: MixedPrior,
        half_normal: HalfNormalPrior | None = None,
        pruning: Pruning | None = None,
        draws: Draws = "mean",
    ) -> None:
        self.prior = prior
        self.half_normal = half_normal
        self.pruning = pruning or Pruning(enabled=False)
        self.draws: Draws = draws
        self.scores: dict[str, list[float]] = {}
        self.children: dict[str, list[str]] = {}
        # a node's posterior until a score lands below it (decisions in a wave share it)
        self.posteriors: dict[str, tuple[GroupPosterior, list[bool]]] = {}

    def choose(self, node_id: str, expandable: list[str], rng: random.Random) -> str | None:
        if not expandable:
            return None
        kids = sorted(self.children.get(node_id, []), key=path_key)
        if self.half_normal is not None:
            if node_id not in self.posteriors:
                groups = [self.scores[k] for k in kids]
                pruned = [is_prunable(g, self.pruning) for g in groups]
                self.posteriors[node_id] = GroupPosterior(groups, self.half_normal), pruned
            posterior, pruned = self.posteriors[node_id]
            open_ids = set(expandable)
            eligible = [k in open_ids for k in kids]
            pick = pick_option(posterior, eligible, pruned, self.draws, rng)
            return None if pick is None else kids[pick]
        means, new = draw_group_means([self.scores[k] for k in kids], self.prior, rng)
        drawn = dict(zip(kids, means, strict=True))
        ordered = sorted(expandable, key=path_key)
        best = max(range(len(ordered)), key=lambda i: (drawn[ordered[i]], -i))
        return ordered[best] if drawn[ordered[best]] > new else None

    def record(self, path: list[str], child_id: str, score: float) -> None:
        self.children.setdefault(path[-1], []).append(child_id)
        self.scores[child_id] = [score]
        for node_id in path:
            self.posteriors.pop(node_id, None)
        for ancestor in path[1:]:  # the root is no one's child
            self.scores[ancestor].append(score)


class ABMCTSM(AdaptiveBranchingSearch[ABMCTSMConfig]):
    """AB-MCTS-M, adaptive branching MCTS with a mixed model (Inoue et al. 2025, "Wider or
    deeper? Scaling LLM inference-time compute with adaptive branching tree search").

    The same search as AB-MCTS-A (steps, rollouts to whole answers, waves of ``parallel``
    decisions, finished or depth-capped children never descended into), but the wider/deeper
    decision at a node comes from one Bayesian mixed-effects model of its children rather
    than separate GEN and CONT posteriors: each child is a group whose observations are the
    scores generated in its subtree, y ~ N(alpha_child, sigma_y^2), with alpha_child ~
    N(mu, sigma_a^2). By default (``model: half_normal``) the model is the reference
    implementation's (treequest): mu ~ N(0.5, 0.2^2), sigma_a ~ HalfNormal(0.2), sigma_y ~
    HalfNormal(0.3), sampled exactly on a grid of the two scales instead of by NUTS; each
    option (every expandable child, and GEN, a new group with no data) gets one draw from
    its posterior predictive, and the highest wins (``draws: mean`` compares the groups'
    means instead); a child whose subtree is at least 4 scores, 75% of them equal, is pruned
    (``prune_subtrees``). A node whose children all score alike and high makes a new child
    look good (wider), one with a clear best child sends the search into it (deeper).
    ``model: conjugate`` is Branchwise's earlier model (scaled-inverse-chi-squared variances,
    ``gibbs_sweeps`` Gibbs sweeps, means compared, no pruning; its mu prior was sd 0.5).
    Cost per iteration: as AB-MCTS-A (one one-step sample, one rollout, one scorer call),
    plus, per decision on the way down, O(grid^2 * children) arithmetic (half_normal) or
    O(gibbs_sweeps * scores below the node) (conjugate).
    Hyperparameters: ``iterations``, ``parallel``, the priors, ``draws``, the pruning, ``rollout``.
    """

    config_model = ABMCTSMConfig
    description = "AB-MCTS-M: a mixed-effects model over children decides wider or deeper."

    def __init__(self, config: ABMCTSMConfig) -> None:
        super().__init__(config)
        self.config_m = config
        self.mixed_prior = MixedPrior(
            mean=config.prior_mean,
            mean_sd=config.prior_mean_sd,
            group_nu=config.group_nu,
            group_tau2=config.group_tau2,
            noise_nu=config.noise_nu,
            noise_tau2=config.noise_tau2,
            sweeps=config.gibbs_sweeps,
        )

    def policy(self, root_id: str) -> BranchPolicy:
        config = self.config_m
        pruning = Pruning(config.prune_subtrees, config.prune_min_size, config.prune_same_share)
        if config.model == "conjugate":
            return MixedModelPolicy(self.mixed_prior, None, pruning, config.draws)
        half_normal = HalfNormalPrior(
            config.prior_mean, config.prior_mean_sd, config.group_sd, config.noise_sd
        )
        return MixedModelPolicy(self.mixed_prior, half_normal, pruning, config.draws)

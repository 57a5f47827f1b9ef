"""AB-MCTS-M: adaptive branching tree search with a mixed-effects model over the children."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from branchwise.core.graph import path_key
from branchwise.strategies.ab_mcts import ABMCTSBaseConfig, AdaptiveBranchingSearch, BranchPolicy
from branchwise.strategies.mixed_model import MixedPrior, draw_group_means


class ABMCTSMConfig(ABMCTSBaseConfig):
    name: Literal["ab_mcts_m"] = "ab_mcts_m"
    prior_mean: float = Field(0.5, description="Prior mean m0 of the population mean score mu.")
    prior_mean_sd: float = Field(0.5, gt=0, description="Prior standard deviation of mu.")
    group_nu: float = Field(1.0, gt=0, description="Prior degrees of freedom of sigma_a^2.")
    group_tau2: float = Field(
        0.05, gt=0, description="Prior scale of sigma_a^2, the spread between children's means."
    )
    noise_nu: float = Field(1.0, gt=0, description="Prior degrees of freedom of sigma_y^2.")
    noise_tau2: float = Field(
        0.05, gt=0, description="Prior scale of sigma_y^2, the spread of scores within a child."
    )
    gibbs_sweeps: int = Field(
        16, ge=1, le=1000, description="Gibbs sweeps per decision (one posterior draw)."
    )


class MixedModelPolicy:
    """AB-MCTS-M's policy: at a node, every child is a group of the scores in its subtree.

    A joint posterior draw of the mixed model gives each child's mean and, for GEN, the
    mean of a new group drawn from the population; Thompson sampling takes the highest
    (ties to GEN, then to the earlier child). Only expandable children compete; the others
    still inform the population.
    """

    def __init__(self, prior: MixedPrior) -> None:
        self.prior = prior
        self.scores: dict[str, list[float]] = {}
        self.children: dict[str, list[str]] = {}

    def choose(self, node_id: str, expandable: list[str], rng: random.Random) -> str | None:
        if not expandable:
            return None
        kids = sorted(self.children.get(node_id, []), key=path_key)
        means, new = draw_group_means([self.scores[k] for k in kids], self.prior, rng)
        drawn = dict(zip(kids, means, strict=True))
        ordered = sorted(expandable, key=path_key)
        best = max(range(len(ordered)), key=lambda i: (drawn[ordered[i]], -i))
        return ordered[best] if drawn[ordered[best]] > new else None

    def record(self, path: list[str], child_id: str, score: float) -> None:
        self.children.setdefault(path[-1], []).append(child_id)
        self.scores[child_id] = [score]
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
    N(mu, sigma_a^2) and weak conjugate priors on mu, sigma_a^2 and sigma_y^2. GEN is a new
    group with no data, so its mean is drawn from N(mu, sigma_a^2): a node whose children
    all score alike and high makes a new child look good (wider), one with a clear best
    child sends the search into it (deeper). Each decision is one joint posterior draw,
    from ``gibbs_sweeps`` Gibbs sweeps (the paper samples the model by MCMC as well).
    Cost per iteration: as AB-MCTS-A (one one-step sample, one rollout, one scorer call),
    plus O(gibbs_sweeps * scores below the node) arithmetic per decision on the way down.
    Hyperparameters: ``iterations``, ``parallel``, the priors, ``gibbs_sweeps``, ``rollout``.
    """

    config_model = ABMCTSMConfig
    description = "AB-MCTS-M: a mixed-effects model over children decides wider or deeper."

    def __init__(self, config: ABMCTSMConfig) -> None:
        super().__init__(config)
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
        return MixedModelPolicy(self.mixed_prior)

"""AB-MCTS-M's decision at a node, as pure functions of the children's scores.

The model is the reference implementation's (treequest's AB-MCTS-M): every child j of a node
is a group whose observations are the scores generated in its subtree,

    y_jk ~ N(alpha_j, sigma_y^2),   alpha_j ~ N(mu, sigma_a^2),
    mu ~ N(m0, s0^2),   sigma_a ~ HalfNormal(g),   sigma_y ~ HalfNormal(e),

with m0 = 0.5, s0 = 0.2, g = 0.2, e = 0.3 by default. GEN (a new child) is a group with no
data. Each option's score is one draw from its posterior *predictive* (a new score of that
child, or of a new child), each option drawn independently, as the reference does.

The reference samples the posterior with NUTS; here mu and the alphas are integrated out
exactly (the model is Gaussian given the two scales), the scales' marginal posterior is
evaluated on a log-spaced grid, and a draw takes a grid cell, then mu, then the alphas from
their Gaussian conditionals: an exact sampler up to the grid, with no chain to converge.
The grid runs from ``floor`` to ``ceiling`` times each scale's prior scale. Where a child's
subtree holds several scores, all equal, sigma_y's posterior is improper at zero: NUTS's
answer there is where its chains stall (GEN 0.41 to 0.57 over six fits of one such node),
the grid's is fixed by the floor (0.55; 0.54 with a floor 100 times lower).

Subtree pruning is the reference's: a child whose subtree holds at least ``min_size`` scores of
which a share of at least ``same_share`` are equal (to two decimals) is not descended into;
the next best child is, or GEN when every child is pruned.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Draws = Literal["predictive", "mean"]


@dataclass(frozen=True)
class HalfNormalPrior:
    """Priors of the mixed model (defaults: the reference's)."""

    mean: float = 0.5
    mean_sd: float = 0.2
    group_sd: float = 0.2
    noise_sd: float = 0.3
    grid: int = 48
    floor: float = 0.01
    ceiling: float = 5.0


@dataclass(frozen=True)
class Pruning:
    """The reference's subtree pruning: ``min_size`` scores, ``same_share`` of them equal."""

    enabled: bool = True
    min_size: int = 4
    same_share: float = 0.75


def is_prunable(scores: Sequence[float], pruning: Pruning) -> bool:
    """True when a subtree's scores are many and mostly the same (to two decimals)."""
    if not pruning.enabled or len(scores) < pruning.min_size:
        return False
    top = Counter(round(s * 100) for s in scores).most_common(1)[0][1]
    return top / len(scores) >= pruning.same_share


class GroupPosterior:
    """The joint posterior of (sigma_a, sigma_y, mu, alphas) given the groups' scores."""

    def __init__(self, groups: Sequence[Sequence[float]], prior: HalfNormalPrior) -> None:
        self.prior = prior
        self.counts = np.array([len(g) for g in groups], dtype=float)
        self.means = np.array([math.fsum(g) / len(g) if g else 0.0 for g in groups])
        sq_dev = [
            math.fsum((y - m) ** 2 for y in g) for g, m in zip(groups, self.means, strict=True)
        ]
        steps = np.linspace(math.log(prior.floor), math.log(prior.ceiling), prior.grid)
        sa = prior.group_sd * np.exp(steps)[:, None]  # rows: sigma_a
        sy = prior.noise_sd * np.exp(steps)[None, :]  # columns: sigma_y
        # half-normal densities times the cell width (sigma * d log sigma) of a log grid
        log_w = (-0.5 * (sa / prior.group_sd) ** 2 + np.log(sa)) + (
            -0.5 * (sy / prior.noise_sd) ** 2 + np.log(sy)
        )
        seen = self.counts > 0
        n, ybar, ss = self.counts[seen], self.means[seen], np.array(sq_dev)[seen]
        if n.size:
            var_y = (sy**2)[..., None]
            # within-group part: (2 pi sy^2)^(-(n-1)/2) n^(-1/2) exp(-SS / (2 sy^2))
            log_w = log_w + np.sum(
                -0.5 * (n - 1) * np.log(2 * math.pi * var_y) - 0.5 * np.log(n) - ss / (2 * var_y),
                axis=-1,
            )
            # group means: ybar_j ~ N(mu, v_j), v_j = sa^2 + sy^2 / n_j, mu ~ N(m0, s0^2)
            v = (sa**2)[..., None] + var_y / n
            prec0 = 1.0 / prior.mean_sd**2
            precision = prec0 + np.sum(1.0 / v, axis=-1)
            centre = (prior.mean * prec0 + np.sum(ybar / v, axis=-1)) / precision
            log_w = log_w + (
                -0.5 * np.sum(np.log(2 * math.pi * v), axis=-1)
                - 0.5 * math.log(2 * math.pi * prior.mean_sd**2)
                + 0.5 * np.log(2 * math.pi / precision)
                - 0.5
                * (prior.mean**2 * prec0 + np.sum(ybar**2 / v, axis=-1) - centre**2 * precision)
            )
        weights = np.exp(log_w - np.max(log_w)).ravel()
        self.cumulative = list(itertools.accumulate((weights / weights.sum()).tolist()))
        self.sa = np.broadcast_to(sa, log_w.shape).ravel().tolist()
        self.sy = np.broadcast_to(sy, log_w.shape).ravel().tolist()

    def draw(self, rng: random.Random) -> tuple[float, float, float, list[float]]:
        """One joint draw: (sigma_a, sigma_y, mu, alpha of each group)."""
        cell = min(bisect.bisect_right(self.cumulative, rng.random()), len(self.cumulative) - 1)
        sa, sy = self.sa[cell], self.sy[cell]
        prior = self.prior
        prec0 = 1.0 / prior.mean_sd**2
        seen = [(c, m) for c, m in zip(self.counts, self.means, strict=True) if c > 0]
        v = [sa * sa + sy * sy / c for c, _ in seen]
        precision = prec0 + math.fsum(1.0 / x for x in v)
        centre = prior.mean * prec0 + math.fsum(m / x for (_, m), x in zip(seen, v, strict=True))
        mu = rng.normalvariate(centre / precision, math.sqrt(1.0 / precision))
        alphas = []
        for count, mean in zip(self.counts, self.means, strict=True):
            prec = 1.0 / (sa * sa) + count / (sy * sy)
            alphas.append(
                rng.normalvariate((mu / (sa * sa) + count * mean / (sy * sy)) / prec, prec**-0.5)
            )
        return sa, sy, mu, alphas

    def child_score(self, j: int, rng: random.Random, draws: Draws) -> float:
        """A draw of child j's score: a predictive new score, or its mean alpha_j."""
        _, sy, _, alphas = self.draw(rng)
        return rng.normalvariate(alphas[j], sy) if draws == "predictive" else alphas[j]

    def new_score(self, rng: random.Random, draws: Draws) -> float:
        """A draw of a new child's score (or of its mean)."""
        sa, sy, mu, _ = self.draw(rng)
        alpha = rng.normalvariate(mu, sa)
        return rng.normalvariate(alpha, sy) if draws == "predictive" else alpha


def choose_option(
    groups: Sequence[Sequence[float]],
    eligible: Sequence[bool],
    prior: HalfNormalPrior,
    pruning: Pruning,
    draws: Draws,
    rng: random.Random,
) -> int | None:
    """Thompson sampling over the children and GEN: a child's index, or None for GEN.

    Only ``eligible`` children (expandable ones) compete; every child informs the model.
    """
    if not any(eligible):
        return None
    prunable = [is_prunable(g, pruning) for g in groups]
    return pick_option(GroupPosterior(groups, prior), eligible, prunable, draws, rng)


def pick_option(
    posterior: GroupPosterior,
    eligible: Sequence[bool],
    prunable: Sequence[bool],
    draws: Draws,
    rng: random.Random,
) -> int | None:
    """One Thompson decision from a posterior: each option's own independent draw, the highest
    wins. As in the reference, when the top draw is a pruned child the best unpruned child is
    taken even if GEN drew higher, and GEN only when every child is pruned. Ties go to children.
    """
    candidates = [j for j, ok in enumerate(eligible) if ok]
    if not candidates:
        return None
    scores = {j: posterior.child_score(j, rng, draws) for j in candidates}
    new = posterior.new_score(rng, draws)
    ranked = sorted(candidates, key=lambda j: -scores[j])  # stable: earlier child first
    if new > scores[ranked[0]]:
        return None
    return next((j for j in ranked if not prunable[j]), None)

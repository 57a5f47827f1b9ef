"""A Bayesian mixed-effects model of scores by group, sampled by Gibbs (AB-MCTS-M).

Each child of a node is a group; every score generated in a child's subtree is an
observation of that group:

    y_jk ~ N(alpha_j, sigma_y^2),   alpha_j ~ N(mu, sigma_a^2),
    mu ~ N(m0, s0^2),   sigma_a^2 ~ Scaled-Inv-chi^2(nu_a, tau_a^2),
    sigma_y^2 ~ Scaled-Inv-chi^2(nu_y, tau_y^2).

Groups share strength through mu and sigma_a: a child seen once is pulled toward the
population, and a *new* child (GEN) is a group with no data, whose mean is drawn from
N(mu, sigma_a^2). All conditionals are conjugate, so a short Gibbs chain gives the joint
posterior draw Thompson sampling needs. Draws use the caller's ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MixedPrior:
    """Priors of the mixed model (defaults: weak, centred on scores in [0, 1])."""

    mean: float = 0.5
    mean_sd: float = 0.5
    group_nu: float = 1.0
    group_tau2: float = 0.05
    noise_nu: float = 1.0
    noise_tau2: float = 0.05
    sweeps: int = 16


def scaled_inv_chi2(nu: float, tau2: float, rng: random.Random) -> float:
    """One draw of Scaled-Inv-chi^2(nu, tau2) = nu * tau2 / chi^2_nu."""
    return nu * tau2 / (2.0 * rng.gammavariate(nu / 2.0, 1.0))


def draw_group_means(
    groups: Sequence[Sequence[float]], prior: MixedPrior, rng: random.Random
) -> tuple[list[float], float]:
    """A joint posterior draw of each group's mean and of a new group's mean.

    Runs ``prior.sweeps`` Gibbs sweeps from the group averages; returns (alpha_j for each
    group, alpha of a new group drawn from N(mu, sigma_a^2)). A group may be empty.
    """
    counts = [len(g) for g in groups]
    sums = [math.fsum(g) for g in groups]
    every = [y for g in groups for y in g]
    start = math.fsum(every) / len(every) if every else prior.mean
    alphas = [s / c if c else start for s, c in zip(sums, counts, strict=True)]
    mu = start
    var_a, var_y = prior.group_tau2, prior.noise_tau2
    prec0 = 1.0 / (prior.mean_sd * prior.mean_sd)
    for _ in range(max(1, prior.sweeps)):
        for j, (count, total) in enumerate(zip(counts, sums, strict=True)):
            precision = 1.0 / var_a + count / var_y
            centre = (mu / var_a + total / var_y) / precision
            alphas[j] = rng.normalvariate(centre, math.sqrt(1.0 / precision))
        precision = prec0 + len(alphas) / var_a
        centre = (prior.mean * prec0 + math.fsum(alphas) / var_a) / precision
        mu = rng.normalvariate(centre, math.sqrt(1.0 / precision))
        spread = math.fsum((a - mu) ** 2 for a in alphas)
        nu_a = prior.group_nu + len(alphas)
        var_a = scaled_inv_chi2(nu_a, (prior.group_nu * prior.group_tau2 + spread) / nu_a, rng)
        residual = math.fsum((y - alphas[j]) ** 2 for j, g in enumerate(groups) for y in g)
        nu_y = prior.noise_nu + len(every)
        var_y = scaled_inv_chi2(nu_y, (prior.noise_nu * prior.noise_tau2 + residual) / nu_y, rng)
    return alphas, rng.normalvariate(mu, math.sqrt(var_a))

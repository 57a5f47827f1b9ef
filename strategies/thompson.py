"""Conjugate posteriors over scores for Thompson sampling (AB-MCTS).

Beta: for scores in [0, 1], each score counts as a fractional success (a += s, b += 1 - s).
Gaussian: unknown mean and variance under a normal-inverse-chi-squared prior (Murphy,
"Conjugate Bayesian analysis of the Gaussian distribution", 2007, section 5): the posterior
keeps (m, kappa, nu, tau2); a draw takes sigma2 from a scaled inverse chi-squared and then
mu ~ N(m, sigma2 / kappa). Draws use the caller's ``random.Random`` so a seed fixes them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Protocol

Distribution = Literal["gaussian", "beta"]


class Posterior(Protocol):
    def observe(self, score: float) -> None: ...

    def sample(self, rng: random.Random) -> float: ...


@dataclass
class BetaPosterior:
    """Beta(a, b) over a success rate; a score s adds s to a and 1 - s to b."""

    a: float = 0.5
    b: float = 0.5

    def observe(self, score: float) -> None:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"a Beta posterior needs scores in [0, 1], got {score!r}")
        self.a += score
        self.b += 1.0 - score

    def sample(self, rng: random.Random) -> float:
        return rng.betavariate(self.a, self.b)


@dataclass
class GaussianPosterior:
    """Normal-inverse-chi-squared posterior over the mean score; prior (m, kappa, nu, tau2)."""

    m: float = 0.0
    kappa: float = 1.0
    nu: float = 1.0
    tau2: float = 0.1
    count: int = 0
    mean: float = 0.0
    sq_dev: float = 0.0  # sum of squared deviations from the running mean (Welford)

    def observe(self, score: float) -> None:
        if not math.isfinite(score):
            raise ValueError(f"a Gaussian posterior needs finite scores, got {score!r}")
        self.count += 1
        delta = score - self.mean
        self.mean += delta / self.count
        self.sq_dev += delta * (score - self.mean)

    def params(self) -> tuple[float, float, float, float]:
        """Posterior (m, kappa, nu, tau2) after the observations."""
        n = self.count
        kappa, nu = self.kappa + n, self.nu + n
        if n == 0:
            return self.m, kappa, nu, self.tau2
        m = (self.kappa * self.m + n * self.mean) / kappa
        shift = n * self.kappa / kappa * (self.m - self.mean) ** 2
        tau2 = (self.nu * self.tau2 + self.sq_dev + shift) / nu
        return m, kappa, nu, tau2

    def sample(self, rng: random.Random) -> float:
        m, kappa, nu, tau2 = self.params()
        # chi-squared with nu degrees of freedom = 2 * Gamma(nu / 2, 1)
        sigma2 = nu * tau2 / (2.0 * rng.gammavariate(nu / 2.0, 1.0))
        return rng.normalvariate(m, math.sqrt(sigma2 / kappa))


@dataclass(frozen=True)
class PosteriorFactory:
    """Makes fresh posteriors with one prior, for every option of every node."""

    distribution: Distribution
    beta_a: float = 0.5
    beta_b: float = 0.5
    mean: float = 0.0
    kappa: float = 1.0
    nu: float = 1.0
    tau2: float = 0.1

    def __call__(self) -> Posterior:
        if self.distribution == "beta":
            return BetaPosterior(self.beta_a, self.beta_b)
        return GaussianPosterior(self.mean, self.kappa, self.nu, self.tau2)

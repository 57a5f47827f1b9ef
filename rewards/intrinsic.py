"""Scores from the policy's own token log-probabilities (no extra model).

Every scorer here is oriented so that higher means more confident, so strategies can rank
by any of them alike; the raw statistic is kept in ``Score.detail``. They need logprobs from
the engine: ``sampling.logprobs: 0`` for the sampled tokens' logprobs, ``k >= 2`` for the
top-k distributions that entropy, self-certainty and confidence read. A candidate without
what a scorer needs gets a failed score naming the missing setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer, ScorerConfig, ScorerResources
from branchwise.rewards.confidence import ConfidenceMeasure, predictive_entropy, trace_confidence

_NO_TOPS = "no top-k logprobs on the path (set sampling.logprobs >= 2)"


class MeanLogprob(Scorer):
    """Mean log-probability of the generated tokens on the path (higher is more confident).

    Needs token logprobs: set ``sampling.logprobs: 0`` (or more) in the recipe.
    """

    needs_logprobs = 0
    description = "Mean token log-probability of the path (needs sampling.logprobs >= 0)."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            if not c.token_logprobs:
                scores.append(Score(value=None, error="no token logprobs (set sampling.logprobs)"))
                continue
            scores.append(Score(value=sum(c.token_logprobs) / len(c.token_logprobs)))
        return scores


class Perplexity(Scorer):
    """Inverse perplexity of the path, exp(mean token logprob), in (0, 1]; 1 is certain."""

    needs_logprobs = 0
    description = "1 / perplexity of the path's tokens (needs sampling.logprobs >= 0)."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            if not c.token_logprobs:
                scores.append(Score(value=None, error="no token logprobs (set sampling.logprobs)"))
                continue
            mean = sum(c.token_logprobs) / len(c.token_logprobs)
            scores.append(Score(value=math.exp(mean), detail={"perplexity": math.exp(-mean)}))
        return scores


def self_certainty(top_logprobs: Sequence[float]) -> float:
    """KL(uniform || p) over the renormalised top-k of one position, in nats (>= 0).

    Kang et al. 2025 ("Scalable Best-of-N Selection via Self-Certainty") average
    KL(U || p) over the full vocabulary at each position. Engines return only the top k,
    so this is the same divergence on the top-k renormalised: -ln k - mean_j ln p_j. It is 0
    for a flat top-k and grows as the distribution peaks.
    """
    if not top_logprobs:
        raise ValueError("self-certainty needs at least one top logprob")
    peak = max(top_logprobs)
    log_total = peak + math.log(sum(math.exp(lp - peak) for lp in top_logprobs))
    k = len(top_logprobs)
    return -math.log(k) - sum(lp - log_total for lp in top_logprobs) / k


class SelfCertainty(Scorer):
    """Mean self-certainty of the path's tokens (see :func:`self_certainty`)."""

    needs_logprobs = 2
    description = "Mean KL(uniform || top-k) per token, Kang et al. 2025 (logprobs >= 2)."

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            tops = [t for t in c.top_logprobs if len(t) >= 2]
            if not tops:
                scores.append(Score(value=None, error=_NO_TOPS))
                continue
            scores.append(Score(value=sum(self_certainty(t) for t in tops) / len(tops)))
        return scores


class TokenEntropyConfig(ScorerConfig):
    statistic: Literal["mean", "max"] = Field(
        "mean", description="mean or max top-k entropy over the path's tokens."
    )


class TokenEntropy(Scorer[TokenEntropyConfig]):
    """Minus the mean (or max) predictive entropy of the path's tokens, from the top-k.

    Value = -statistic, so a calmer path ranks higher; detail keeps both statistics.
    """

    config_model = TokenEntropyConfig
    needs_logprobs = 2
    description = "Minus mean/max token entropy from top-k logprobs (higher = calmer path)."

    def __init__(self, config: TokenEntropyConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        self.cfg = config

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            entropies = [predictive_entropy(t) for t in c.top_logprobs if len(t) >= 2]
            if not entropies:
                scores.append(Score(value=None, error=_NO_TOPS))
                continue
            stats = {"mean": sum(entropies) / len(entropies), "max": max(entropies)}
            scores.append(Score(value=-stats[self.cfg.statistic], detail=dict(stats)))
        return scores


class GroupConfidenceConfig(ScorerConfig):
    measure: ConfidenceMeasure = Field(
        "lowest_group", description="lowest_group, bottom_group, tail or mean (DeepConf)."
    )
    window: int = Field(64, ge=1, description="Sliding window in tokens (shrinks to fit).")
    tail: int = Field(32, ge=1, description="Tokens at the end for measure=tail.")
    bottom_share: float = Field(
        0.1, gt=0, le=1, description="Share of weakest windows averaged for bottom_group."
    )


class GroupConfidence(Scorer[GroupConfidenceConfig]):
    """DeepConf trace confidence (Fu et al. 2025) from ``rewards.confidence``."""

    config_model = GroupConfidenceConfig
    needs_logprobs = 2
    description = "DeepConf group confidence of the path (lowest/bottom/tail/mean window)."

    def __init__(self, config: GroupConfidenceConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        self.cfg = config

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            if not any(c.top_logprobs):
                scores.append(Score(value=None, error=_NO_TOPS))
                continue
            value = trace_confidence(
                c.top_logprobs,
                self.cfg.measure,
                window=self.cfg.window,
                tail=self.cfg.tail,
                bottom_share=self.cfg.bottom_share,
            )
            scores.append(Score(value=value))
        return scores

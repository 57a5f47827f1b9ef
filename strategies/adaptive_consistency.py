"""Adaptive self-consistency: sample in rounds until the vote is decided."""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

from pydantic import Field, model_validator

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node
from branchwise.core.port import SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.selection import majority_vote

StopReason = Literal["beta", "supermajority", "max_samples", "budget"]


class AdaptiveSelfConsistencyConfig(StrategyConfig):
    name: Literal["adaptive_self_consistency"] = "adaptive_self_consistency"
    max_samples: int = Field(16, ge=1, description="Most solutions sampled in all rounds.")
    initial: int = Field(2, ge=1, description="Solutions in the first round.")
    growth: Literal["double", "fixed"] = Field(
        "fixed",
        description="fixed: each later round samples `round_size` (the stopping rule is "
        "checked after each round); double: each round samples as many as drawn so far "
        "(its_hub's rounds: checks only at 2, 4, 8, ...).",
    )
    round_size: int | None = Field(
        None,
        ge=1,
        description="Samples per later round for growth=fixed, i.e. how often the rule is "
        "checked (default 1: after every sample, as Aggarwal et al. do).",
    )
    stopping: Literal["beta", "supermajority"] = Field(
        "beta",
        description="beta: stop when P(leader's share > runner-up's) >= `confidence` under a "
        "uniform Beta posterior; supermajority: stop when the leader holds `supermajority` "
        "of the samples drawn.",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Posterior probability the beta rule requires."
    )
    supermajority: float = Field(
        0.75, gt=0.5, le=1.0, description="Leader's share of samples the supermajority rule needs."
    )

    @model_validator(mode="after")
    def _consistent(self) -> AdaptiveSelfConsistencyConfig:
        if self.initial > self.max_samples:
            raise ValueError(
                f"initial ({self.initial}) must not exceed max_samples ({self.max_samples})"
            )
        if self.round_size is not None and self.growth != "fixed":
            raise ValueError("round_size applies only to growth 'fixed'")
        return self


def leader_probability(leader: int, runner_up: int) -> float:
    """P(p_leader > p_runner_up) given their vote counts, uniform prior (Adaptive-Consistency).

    Restricted to the two leading answers, the leader's share p of their votes has posterior
    Beta(leader + 1, runner_up + 1); P(p > 1/2) for integer parameters equals
    P(Binomial(leader + runner_up + 1, 1/2) <= leader), computed exactly here.
    """
    if leader < 0 or runner_up < 0:
        raise ValueError("vote counts must be non-negative")
    trials = leader + runner_up + 1
    return float(sum(math.comb(trials, j) for j in range(leader + 1)) / 2**trials)


class AdaptiveSelfConsistency(Strategy[AdaptiveSelfConsistencyConfig]):
    """Adaptive self-consistency (Aggarwal et al. 2023, "Let's Sample Step by Step").

    Samples ``initial`` whole solutions, then one more at a time (``round_size`` at a time,
    or doubling rounds with ``growth: double``), one engine request per round, and checks
    the stopping rule after every round, so it stops as soon as the majority vote is
    decided: either the Beta rule (the posterior probability that the leading answer's share
    beats the runner-up's reaches ``confidence``; the paper's default) or a supermajority rule
    (its_hub-style: the leader holds ``supermajority`` of the samples drawn; unanswered
    samples count against it). Cost: at most ``max_samples`` samples, as few as ``initial``
    on easy problems; no scorer calls. Checking after every sample spends the fewest tokens
    but serialises one problem's samples (other problems keep the engine busy); a larger
    ``round_size`` trades tokens for latency. The result's detail says how many samples were
    used and saved.
    """

    config_model = AdaptiveSelfConsistencyConfig
    description = "Self-consistency that samples in rounds and stops once the vote is decided."

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        nodes: list[Node] = []
        rounds = 0
        reason: StopReason = "max_samples"
        decided, statistic = False, 0.0
        while len(nodes) < cfg.max_samples:
            size = min(self._round_size(len(nodes)), cfg.max_samples - len(nodes))
            try:
                nodes.extend(await ctx.sample(size))
            except BudgetExhausted:
                if not nodes:
                    raise
                reason = "budget"
                break
            rounds += 1
            decided, statistic = self._decided(nodes)
            if decided:
                reason = cfg.stopping
                break
        if not decided:
            statistic = self._decided(nodes)[1]
        picked = majority_vote([n for n in nodes if n.answer is not None])
        detail = {
            "samples": len(nodes),
            "max_samples": cfg.max_samples,
            "saved_samples": cfg.max_samples - len(nodes),
            "rounds": rounds,
            "stop_reason": reason,
            "statistic": round(statistic, 6),
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _round_size(self, drawn: int) -> int:
        if drawn == 0:
            return self.config.initial
        if self.config.growth == "double":
            return drawn
        return self.config.round_size or 1

    def _decided(self, nodes: list[Node]) -> tuple[bool, float]:
        """Whether the stopping rule is met, and the statistic it tested."""
        counts = sorted(Counter(n.answer for n in nodes if n.answer is not None).values())
        leader = counts[-1] if counts else 0
        runner_up = counts[-2] if len(counts) > 1 else 0
        if self.config.stopping == "beta":
            probability = leader_probability(leader, runner_up)
            return probability >= self.config.confidence, probability
        share = leader / len(nodes) if nodes else 0.0
        return share >= self.config.supermajority, share

"""DeepConf: vote with the traces the model is confident in; stop weak traces early."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.rewards.confidence import (
    ConfidenceMeasure,
    SlidingMean,
    lowest_group_confidence,
    token_confidence,
    token_confidences,
    trace_confidence,
)
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.deepconf_rules import (
    ThresholdRule,
    count_until_consensus,
    stop_threshold,
)
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import majority_vote, weighted_vote


class DeepConfConfig(StrategyConfig):
    name: Literal["deepconf"] = "deepconf"
    mode: Literal["offline", "online"] = Field(
        "offline",
        description="offline: sample all traces, keep the most confident, vote; online: "
        "warm-up traces set a threshold and later traces stop once a window falls below it.",
    )
    n: int = Field(
        64, ge=1, description="Most traces in all (warm-up included; the paper's budget B)."
    )
    batch: int | None = Field(None, ge=1, description="Samples per request (offline sampling).")
    top_k_logprobs: int = Field(
        20,
        ge=1,
        le=20,
        description="Top-k logprobs per token the confidence averages over (the paper's code "
        "asks vLLM for 20, its usual maximum).",
    )
    window: int = Field(
        16, ge=1, description="Tokens per sliding window (group); shrunk for shorter traces."
    )
    measure: ConfidenceMeasure = Field(
        "lowest_group",
        description="Trace confidence for filtering and vote weights: lowest_group (weakest "
        "window), bottom_group (mean of the weakest `bottom_share` windows), tail (last "
        "`tail_tokens` tokens) or mean (all tokens).",
    )
    bottom_share: float = Field(0.1, gt=0, le=1, description="Share of windows bottom_group uses.")
    tail_tokens: int = Field(16, ge=1, description="Tokens the tail measure averages.")
    keep_percent: float = Field(
        90.0,
        gt=0,
        le=100,
        description="Percent of traces kept by confidence (DeepConf-high 90, -low 10). Offline: "
        "the most confident keep_percent % vote; online: the stop threshold is set from the "
        "warm-up by `threshold_rule`.",
    )
    threshold_rule: ThresholdRule = Field(
        "percentile",
        description="Online threshold: percentile (the reference code's: the (100 - "
        "keep_percent)-th percentile of the warm-up's lowest group confidences, interpolated) "
        "or ceiling (the lowest group confidence of the ceil(keep_percent % x warmup)-th most "
        "confident warm-up trace, so exactly that share passes; Branchwise's earlier rule).",
    )
    consensus_check: Literal["trace", "wave"] = Field(
        "trace",
        description="Online: when the consensus stop is checked: after each trace, counted in "
        "the wave's order (the paper's; traces of the wave after the stop do not vote), or "
        "only between waves (Branchwise's earlier rule).",
    )
    warmup: int = Field(
        16, ge=1, description="Warm-up traces that set the online threshold (paper: N_init 16)."
    )
    wave: int = Field(
        8,
        ge=1,
        description="Online: traces streamed at once after the warm-up; the consensus stop is "
        "checked between waves, so the traces used do not depend on completion order.",
    )
    consensus: float | None = Field(
        0.95,
        gt=0.5,
        le=1.0,
        description="Online: stop adding traces once the leading answer's confidence-weighted "
        "vote share reaches this (the paper's tau = 0.95); null: always sample n traces.",
    )
    weighted: bool = Field(True, description="Weight each kept vote by its trace confidence.")

    @model_validator(mode="after")
    def _warmup_fits(self) -> DeepConfConfig:
        if self.mode == "online" and self.warmup >= self.n:
            raise ValueError(f"online mode needs warmup ({self.warmup}) < n ({self.n})")
        return self


def kept_share_threshold(lowest: list[float], keep_percent: float) -> float:
    """The stop threshold that lets ceil(keep_percent % of the warm-up) warm-up traces pass.

    The paper's code takes np.percentile(lowest, 100 - keep_percent) with interpolation,
    which on a small warm-up always drops one more trace than the share says (4 traces at
    keep 90 %: the threshold falls between the two lowest, so one of 4 is dropped, not 0).
    This is the same rule at the paper's 16 warm-up traces and DeepConf-low (keep 10 %: 2
    pass), and one more trace at DeepConf-high (15 pass, where interpolation passes 14).
    """
    return stop_threshold(lowest, keep_percent, "ceiling")


class DeepConf(Strategy[DeepConfConfig]):
    """DeepConf (Fu et al. 2025, "Deep Think with Confidence").

    Token confidence is minus the mean of the top-k logprobs (k = ``top_k_logprobs``, 20 as
    in the paper's code); group confidence its mean over a sliding ``window`` (2048 tokens in
    the paper; shrunk to the trace for short ones). Offline: sample ``n`` traces, keep the
    ``keep_percent`` most confident by ``measure`` and take a confidence-weighted vote.
    Online: sample ``warmup`` traces (N_init = 16), set the stop threshold at the (100 -
    ``keep_percent``)-th percentile of their lowest group confidences (the reference code's;
    ``threshold_rule: ceiling`` lets exactly ceil(``keep_percent`` %) pass), then stream
    further traces ``wave`` at a time, aborting each as soon as its latest window's
    confidence falls below the threshold (aborted traces stay in the graph, status
    "aborted", and do not vote), and stop adding traces once the leading answer holds
    ``consensus`` (tau = 0.95) of the confidence-weighted votes, checked after each trace in
    the wave's order (``consensus_check``), or after ``n`` traces.
    Warm-up traces below the threshold do not vote either. Cost: at most ``n`` traces with
    top-k logprobs; online saves the tokens after each stop and every trace after
    consensus. No scorer calls. keep_percent 90 is DeepConf-high, 10 DeepConf-low.
    """

    config_model = DeepConfConfig
    description = "Confidence-filtered, confidence-weighted voting; online mode stops weak traces."

    async def search(self, ctx: SearchPort) -> SearchResult:
        if self.config.mode == "offline":
            nodes = await sample_solutions(
                ctx, self.config.n, self.config.batch, logprobs=self.config.top_k_logprobs
            )
            return self._vote(nodes, {"samples": len(nodes)})
        return await self._online(ctx)

    def select(self, tree: TreeView) -> SearchResult:
        """A confidence-filtered vote over every finished trace the tree holds."""
        return self._vote(tree.terminals(), {})

    async def _online(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        warm = await ctx.sample(cfg.warmup, logprobs=cfg.top_k_logprobs)
        lows = [self._lowest(n) for n in warm if any(n.top_logprobs)]
        if not lows:
            raise ValueError("deepconf needs top-k logprobs; the engine returned none")
        threshold = stop_threshold(lows, cfg.keep_percent, cfg.threshold_rule)
        voters = [n for n in warm if self._lowest(n) >= threshold]
        warm_below = len(warm) - len(voters)
        traces: list[Node] = []
        remaining = cfg.n - cfg.warmup
        share = self._leader_share(voters)
        exhausted, unused = False, 0
        while remaining > 0 and not exhausted:
            if cfg.consensus is not None and share >= cfg.consensus:
                break
            size = min(cfg.wave, remaining)
            remaining -= size
            outcomes = await asyncio.gather(
                *(self._watched_trace(ctx, threshold) for _ in range(size)),
                return_exceptions=True,
            )
            arrivals: list[Node | None] = []
            for outcome in outcomes:
                if isinstance(outcome, BudgetExhausted):
                    exhausted = True
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                node, below = outcome
                traces.append(node)
                # a trace that fell below was cut (recorded as aborted): no vote
                arrivals.append(None if below else node)
            if cfg.consensus is not None and cfg.consensus_check == "trace":
                voters, used = count_until_consensus(
                    voters, arrivals, self._leader_share, cfg.consensus
                )
                unused += len(arrivals) - used
            else:
                voters += [n for n in arrivals if n is not None]
            share = self._leader_share(voters)
        stopped = [n for n in traces if n.finish_reason == "abort"]
        detail = {
            "threshold": round(threshold, 6),
            "samples": len(warm) + len(traces),
            "stopped_early": len(stopped),
            "stopped_tokens": sum(len(n.token_ids) for n in stopped),
            "warmup_below_threshold": warm_below,
            "leader_share": round(share, 6),
            "consensus_stop": cfg.consensus is not None and share >= cfg.consensus,
            "after_consensus": unused,
        }
        return self._vote(voters, detail, filter_share=False)

    def _leader_share(self, voters: list[Node]) -> float:
        """The leading answer's share of the (confidence-weighted) votes; 0 with no votes."""
        totals: dict[str, float] = {}
        for node in voters:
            confidence = self._confidence(node)
            if node.answer is None or confidence is None:
                continue
            weight = max(confidence, 0.0) if self.config.weighted else 1.0
            totals[node.answer] = totals.get(node.answer, 0.0) + weight
        whole = math.fsum(totals.values())
        return max(totals.values()) / whole if whole > 0 else 0.0

    async def _watched_trace(self, ctx: SearchPort, threshold: float) -> tuple[Node, bool]:
        """One streamed trace, aborted at the first full window below ``threshold``."""
        monitor = SlidingMean(self.config.window)
        async with ctx.stream(
            ctx.root, one_step=False, logprobs=self.config.top_k_logprobs
        ) as stream:
            seen = 0
            below = False
            async for partial in stream:
                for top in partial.top_logprobs[seen:]:
                    group = monitor.push(token_confidence(top)) if top else None
                    if group is not None and group < threshold:
                        below = True
                        break
                seen = len(partial.top_logprobs)
                if below:
                    stream.cut()  # stopped here even if the engine already finished
                    break
        assert stream.node is not None
        return stream.node, below

    def _lowest(self, node: Node) -> float:
        confidences = token_confidences(node.top_logprobs)
        if not confidences:
            return -math.inf
        return lowest_group_confidence(confidences, self.config.window)

    def _confidence(self, node: Node) -> float | None:
        if not any(node.top_logprobs):
            return None
        return trace_confidence(
            node.top_logprobs,
            self.config.measure,
            window=self.config.window,
            tail=self.config.tail_tokens,
            bottom_share=self.config.bottom_share,
        )

    def _vote(
        self, nodes: list[Node], detail: Mapping[str, object], *, filter_share: bool = True
    ) -> SearchResult:
        confidence = {n.id: self._confidence(n) for n in nodes if n.answer is not None}
        rated = [n for n in nodes if confidence.get(n.id) is not None]
        if filter_share and rated:
            count = max(1, math.ceil(len(rated) * self.config.keep_percent / 100))
            # Stable sort: equal confidences keep node-id order, so the cut is reproducible.
            order = {n.id: i for i, n in enumerate(nodes)}
            rated = sorted(rated, key=lambda n: -(confidence[n.id] or 0.0))[:count]
            rated.sort(key=lambda n: order[n.id])
        if self.config.weighted:
            picked = weighted_vote(rated, lambda n: confidence[n.id] or 0.0)
        else:
            picked = majority_vote(rated)
        summary = {"voters": len(rated), **detail, **picked.detail}
        return SearchResult(picked.answer, picked.node_id, summary)

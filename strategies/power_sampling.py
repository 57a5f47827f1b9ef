"""Reasoning with Sampling: Metropolis-Hastings towards the power distribution p^alpha."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node
from branchwise.core.port import SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig


class PowerSamplingConfig(StrategyConfig):
    name: Literal["power_sampling"] = "power_sampling"
    alpha: float = Field(
        4.0,
        ge=1.0,
        description="Power of the target p^alpha (1: plain sampling); the proposal samples at "
        "temperature 1/alpha.",
    )
    blocks: int = Field(
        4, ge=1, description="Blocks the answer grows by; the chain targets p^alpha of the "
        "prefix written so far after each block."
    )  # fmt: skip
    mcmc_steps: int = Field(
        4, ge=0, description="Metropolis-Hastings steps (suffix resamplings) per block."
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Length cap of the answer (default: sampling.max_tokens)."
    )
    top_logprobs: int = Field(
        20,
        ge=1,
        le=20,
        description="Top log-probabilities per proposed token, from which the proposal's "
        "normaliser sum_v p(v)^alpha is computed (the tail beyond them bounded).",
    )


def proposal_logprob(logp: float, top: Sequence[float], alpha: float) -> float:
    """log q(token) for the proposal q ∝ p^alpha at one position (sampling at temperature
    1/alpha), given the token's log p and the position's top log-probabilities.

    The normaliser sum_v p(v)^alpha is exact over the top tokens; the tail (mass m below the
    smallest top probability p_k) adds between 0 and m * p_k^(alpha-1), counted as its
    midpoint. With alpha >= 2 and a top-20 that is a negligible error on any real model; on
    the scripted token-level policy the top holds the whole distribution, so it is exact.
    """
    if not top:
        return 0.0 if alpha == 1.0 else math.nan
    head = sum(math.exp(alpha * lp) for lp in top)
    tail = max(0.0, 1.0 - sum(math.exp(lp) for lp in top))
    head += tail * math.exp((alpha - 1.0) * min(top)) / 2.0
    return alpha * logp - math.log(head)


@dataclass(frozen=True)
class _Sample:
    """The chain's state: tokens after the prompt, each token's log p and log q, its node."""

    node: Node
    base: Node
    ids: tuple[int, ...]
    logp: tuple[float, ...]
    logq: tuple[float, ...]

    @property
    def finished(self) -> bool:
        return self.node.finish_reason == "stop"


class PowerSampling(Strategy[PowerSamplingConfig]):
    """Power sampling (Karan & Du 2025, "Reasoning with Sampling: Your Base Model is Smarter
    Than You Think"): one answer drawn, by Metropolis-Hastings, from p^alpha of the base
    model instead of p, which favours tokens with likely futures (unlike low temperature),
    with no verifier and no training. The answer grows in ``blocks`` blocks of
    max_tokens/blocks tokens, each first sampled from the proposal (p at temperature
    1/alpha); after each block ``mcmc_steps`` times a position t is drawn uniformly, the
    suffix from t to the block's end is re-sampled from the proposal, and the new sample is
    accepted with probability min(1, p(x')^alpha q(x|x') / (p(x)^alpha q(x'|x))), log p of
    the new suffix scored by the engine (``port.logprobs_of``), log q from the proposal's
    top log-probabilities. Cost: about T (1 + mcmc_steps (blocks + 1) / 4) proposal tokens
    for an answer of T tokens, plus one scoring request (a prefill of the path) per step.
    Knobs: alpha (4), blocks (4), mcmc_steps (4). Rejected proposals stay in the tree,
    pruned; the one unpruned finished node is the answer.
    """

    config_model = PowerSamplingConfig
    description = "Reasoning with Sampling: MCMC towards p^alpha, block by block"
    needs_token_engine = True
    needs_given_logprobs = True

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        length = cfg.max_tokens or port.max_tokens
        block = math.ceil(length / cfg.blocks)
        state: _Sample | None = None
        proposals = accepted = 0
        try:
            for k in range(cfg.blocks):
                end = min((k + 1) * block, length)
                if state is None or (not state.finished and len(state.ids) < end):
                    # the block's first draft from the proposal, kept as it is (the paper)
                    grown = await self._propose(port, state, len(state.ids) if state else 0, end)
                    if grown is None:
                        break
                    self._retire(port, state)
                    state = grown
                if state is None:
                    break
                for _ in range(cfg.mcmc_steps if state.ids else 0):
                    t = port.rng.randrange(len(state.ids))
                    proposal = await self._propose(port, state, t, end)
                    proposals += 1
                    if proposal is None:
                        continue
                    if self._accept(port, state, proposal, t):
                        accepted += 1
                        self._retire(port, state)
                        state = proposal
                    else:
                        self._retire(port, proposal)
                if state.finished:
                    break
        except BudgetExhausted:
            pass  # the chain's state so far is the answer
        picked = self.select(port)
        detail = {
            "proposals": proposals,
            "accepted": accepted,
            "acceptance_rate": accepted / proposals if proposals else None,
        }
        return SearchResult(picked.answer, picked.node_id, {**picked.detail, **detail})

    async def _propose(
        self, port: SearchPort, state: _Sample | None, t: int, end: int
    ) -> _Sample | None:
        """``state``'s first ``t`` tokens and a suffix to ``end`` tokens from the proposal
        (None when the engine failed it); the nodes it made are pruned if it fails."""
        cfg = self.config
        base = port.root
        if state is not None and t > 0:
            base = await port.extend(port.root, state.ids[:t], token_logprobs=state.logp[:t])
        made = [base]
        try:
            [child] = await port.expand(
                base,
                1,
                one_step=False,
                max_tokens=end - t,
                temperature=1.0 / cfg.alpha,
                logprobs=cfg.top_logprobs,
            )
            made.append(child)
            if port.status(child) == "failed" or not child.token_ids:
                self._prune(port, made)
                return None
            logp = await port.logprobs_of(base, child.token_ids)
        except BudgetExhausted:
            self._prune(port, made)
            raise
        logq = tuple(
            proposal_logprob(lp, top, cfg.alpha)
            for lp, top in zip(logp, child.top_logprobs, strict=False)
        )
        head = state.ids[:t] if state is not None else ()
        head_p = state.logp[:t] if state is not None else ()
        head_q = state.logq[:t] if state is not None else ()
        return _Sample(child, base, head + child.token_ids, head_p + logp, head_q + logq)

    def _accept(self, port: SearchPort, old: _Sample, new: _Sample, t: int) -> bool:
        """The Metropolis-Hastings test; the uniform choice of t adds log(|x| / |x'|)."""
        alpha = self.config.alpha
        log_ratio = alpha * (sum(new.logp[t:]) - sum(old.logp[t:]))
        log_ratio += sum(old.logq[t:]) - sum(new.logq[t:])
        log_ratio += math.log(len(old.ids)) - math.log(len(new.ids))
        if math.isnan(log_ratio):
            return False
        return log_ratio >= 0 or port.rng.random() < math.exp(log_ratio)

    def _retire(self, port: SearchPort, sample: _Sample | None) -> None:
        """A state left behind: its node (and its forced prefix) pruned."""
        if sample is not None:
            self._prune(port, [sample.node, sample.base])

    @staticmethod
    def _prune(port: SearchPort, nodes: Sequence[Node]) -> None:
        port.prune([n for n in nodes if n.id != port.root.id])

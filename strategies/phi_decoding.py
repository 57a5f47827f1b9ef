"""phi-Decoding: choose each step by simulating its future (foresight sampling)."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.step_search import gather_within_budget


class PhiDecodingConfig(StrategyConfig):
    name: Literal["phi_decoding"] = "phi_decoding"
    beams: int = Field(2, ge=1, description="Steps kept at each depth (M), sampled by value.")
    candidates: int = Field(4, ge=1, description="Candidate next steps sampled per beam (N).")
    temperature: float = Field(
        0.1,
        gt=0.0,
        description="Softmax temperature of the foresight advantage (mean token log-probability "
        "differences are small, so it is low).",
    )
    width_sigma: float | None = Field(
        1.0,
        ge=0.0,
        description="Width pruning: candidates whose step mean log-probability falls below "
        "mean - width_sigma * std of the depth's candidates get no foresight (None: off).",
    )
    agree_threshold: float | None = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="Depth pruning: once this share of a depth's foresights reach the same "
        "answer, stop stepping and answer with the best foresight of that cluster (None: off).",
    )
    max_depth: int = Field(12, ge=1, description="Most steps before the foresights decide.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )


def foresight_weights(
    advantages: Sequence[float], answers: Sequence[str | None], temperature: float
) -> list[float]:
    """phi-Decoding's step value: softmax(advantage / T) plus the normalised size of the
    answer cluster each foresight falls in (a foresight without an answer joins none)."""
    top = max(advantages)
    exp = [math.exp((a - top) / temperature) for a in advantages]
    adv = [e / sum(exp) for e in exp]
    sizes = Counter(a for a in answers if a is not None)
    share = [float(sizes[a]) if a is not None else 0.0 for a in answers]
    total = sum(share)
    align = [s / total for s in share] if total else [0.0] * len(share)
    return [a + b for a, b in zip(adv, align, strict=True)]


def sample_without_replacement(weights: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """``k`` indices drawn one after another in proportion to the remaining weights."""
    left = list(range(len(weights)))
    chosen: list[int] = []
    while left and len(chosen) < k:
        total = sum(weights[i] for i in left)
        pick = left[-1]
        if total > 0:
            u, acc = rng.random() * total, 0.0
            for i in left:
                acc += weights[i]
                if u < acc:
                    pick = i
                    break
        chosen.append(pick)
        left.remove(pick)
    return sorted(chosen)


class PhiDecoding(Strategy[PhiDecodingConfig]):
    """phi-Decoding (Xu et al. 2025, "phi-Decoding: Adaptive Foresight Sampling for Balanced
    Inference-Time Exploration and Exploitation"), without a reward model.

    Each of the M beams samples N candidate next steps. Width pruning drops candidates whose
    step mean log-probability is far below the depth's (``width_sigma``); each remaining one
    is rolled out to the end (its foresight). A candidate's value adds two normalised parts:
    softmax over candidates of its advantage (the foresight path's mean token log-probability
    minus that of its beam's own foresight one step earlier) at ``temperature``, and the share
    of foresights that reach its foresight's answer (the paper clusters foresight texts; here
    the cluster is the answer). M candidates are sampled without replacement by value as the
    next beams. Depth pruning: once ``agree_threshold`` of a depth's foresights agree, the
    search stops and answers with the highest-valued foresight of that cluster; at
    ``max_depth`` (or when every beam finished) the highest-valued beam's foresight answers.
    Cost per depth: M requests of n=N one-step samples and up to M*N rollouts to the end (all
    with chosen-token log-probabilities), no scorer calls. Knobs: ``beams`` (M),
    ``candidates`` (N), ``temperature``, ``width_sigma``, ``agree_threshold``, ``max_depth``.
    """

    config_model = PhiDecodingConfig
    description = "Choose each step by its foresight: probability advantage plus answer agreement."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        beams = [port.root]
        earlier: dict[str, float] = {port.root.id: 0.0}  # a beam's own foresight value
        foresight_of: dict[str, Node] = {}
        weights: dict[str, float] = {}
        exhausted = False
        depth = 0
        agreed = False
        while depth < cfg.max_depth and not exhausted:
            growing = [b for b in beams if not b.terminal]
            if not growing:
                break
            steps, exhausted = await gather_within_budget(
                [
                    port.expand(b, cfg.candidates, max_tokens=cfg.step_max_tokens, logprobs=0)
                    for b in growing
                ]
            )
            candidates = [c for group in steps if group for c in group]
            live = self._width_pruned(port, candidates)
            rollouts, exhausted_here = await gather_within_budget(
                [port.expand(c, 1, one_step=False, logprobs=0) for c in live if not c.terminal]
            )
            exhausted = exhausted or exhausted_here
            done = iter(rollouts)
            judged: list[Node] = []
            for c in live:
                ending = [c] if c.terminal else next(done)
                if ending and ending[0].terminal:
                    foresight_of[c.id] = ending[0]
                    judged.append(c)
            depth += 1
            if not judged:
                break
            value = {c.id: self._mean_logprob(port, foresight_of[c.id]) for c in judged}
            advantages = [value[c.id] - earlier[str(c.parent_id)] for c in judged]
            answers = [foresight_of[c.id].answer for c in judged]
            w = foresight_weights(advantages, answers, cfg.temperature)
            weights = {c.id: wi for c, wi in zip(judged, w, strict=True)}
            earlier.update(value)
            sizes = Counter(a for a in answers if a is not None)
            if cfg.agree_threshold is not None and sizes:
                answer, size = sizes.most_common(1)[0]
                if size / len(judged) >= cfg.agree_threshold:
                    beams = [c for c in judged if foresight_of[c.id].answer == answer]
                    agreed = True
                    break
            picked = sample_without_replacement(w, cfg.beams, port.rng)
            beams = [judged[i] for i in picked]
            kept = {b.id for b in beams}
            port.prune([c for c in candidates if c.id not in kept and not c.terminal])
        if not beams or not weights:
            picked_result = self.select(port)
            return SearchResult(picked_result.answer, picked_result.node_id, picked_result.detail)
        best = max(
            (b for b in beams if b.id in weights),
            key=lambda b: (weights[b.id], [-i for i in path_key(b.id)]),
        )
        final = foresight_of[best.id]
        detail = {"depth": depth, "agreed": agreed, "budget_exhausted": exhausted}
        return SearchResult(final.answer, final.id, detail)

    def _width_pruned(self, port: SearchPort, candidates: list[Node]) -> list[Node]:
        """Candidates worth a foresight: those whose step is not far less likely than the rest."""
        sigma = self.config.width_sigma
        if sigma is None or len(candidates) <= self.config.beams:
            return candidates
        step = {c.id: _step_mean(c) for c in candidates}
        mean, spread = statistics.fmean(step.values()), statistics.pstdev(step.values())
        keep = [c for c in candidates if step[c.id] >= mean - sigma * spread]
        if len(keep) < self.config.beams:  # never fewer than M
            order = sorted(candidates, key=lambda c: (-step[c.id], path_key(c.id)))
            keep = sorted(order[: self.config.beams], key=lambda c: path_key(c.id))
        port.prune([c for c in candidates if c not in keep])
        return keep

    @staticmethod
    def _mean_logprob(port: SearchPort, node: Node) -> float:
        tokens = port.written_tokens(node)
        return node.cum_logprob / tokens if tokens else 0.0


def _step_mean(node: Node) -> float:
    return node.segment_logprob / len(node.token_logprobs) if node.token_logprobs else 0.0

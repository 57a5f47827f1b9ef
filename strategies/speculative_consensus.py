"""Speculative decoding for multi-sample inference: drafts from the other paths, verified."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.step_search import gather_within_budget

RETRIES = 64
"""Most one-token draws for the residual after a rejection (each is exact; past this many
the last one is kept, a bias only when p(rejected token) is above ~0.93)."""


class SpeculativeConsensusConfig(StrategyConfig):
    name: Literal["speculative_consensus"] = "speculative_consensus"
    n: int = Field(8, ge=1, description="Parallel samples (paths), voted on at the end.")
    leaders: int = Field(
        1,
        ge=0,
        description="Paths sampled first, plainly and in one request, so the others have "
        "something to draft from (paths in lockstep are never ahead of each other).",
    )
    match: int = Field(
        4, ge=1, description="Last tokens of a path looked up in the other paths to draft from."
    )
    draft_tokens: int = Field(16, ge=1, description="Most tokens drafted (and verified) at once.")
    chunk_tokens: int = Field(16, ge=1, description="Tokens sampled between two drafts.")
    min_votes: int = Field(
        1,
        ge=1,
        description="Continuations in the other paths that must agree on a token for it to "
        "be drafted (the consensus).",
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Length cap of a path (default: sampling.max_tokens)."
    )


def consensus_draft(
    own: Sequence[int],
    others: Sequence[Sequence[int]],
    *,
    match: int,
    length: int,
    min_votes: int,
) -> tuple[int, ...]:
    """Tokens most of the other paths wrote after the place where they wrote ``own``'s last
    ``match`` tokens (or, for a shorter ``own``, after the same opening), token by token while
    at least ``min_votes`` continuations agree; ties go to the smaller token id."""
    continuations: list[Sequence[int]] = []
    if len(own) < match:
        for other in others:
            if tuple(other[: len(own)]) == tuple(own):
                continuations.append(other[len(own) : len(own) + length])
    else:
        key = tuple(own[-match:])
        for other in others:
            for end in range(match, len(other)):
                if tuple(other[end - match : end]) == key:
                    continuations.append(other[end : end + length])
    draft: list[int] = []
    while len(draft) < length:
        at = len(draft)
        counts = Counter(c[at] for c in continuations if len(c) > at)
        if not counts:
            break
        token, votes = min(counts.items(), key=lambda item: (-item[1], item[0]))
        if votes < min_votes:
            break
        draft.append(token)
        continuations = [c for c in continuations if len(c) > at and c[at] == token]
    return tuple(draft)


def accepted_length(logprobs: Sequence[float], rng: random.Random) -> int:
    """How many drafted tokens in a row pass the test: a deterministic draft d is kept with
    probability min(1, p(d) / q(d)) = p(d), which keeps each token distributed as p."""
    for index, logprob in enumerate(logprobs):
        if rng.random() >= math.exp(logprob):
            return index
    return len(logprobs)


@dataclass
class _Path:
    base: Node
    ids: tuple[int, ...] = ()
    end: Node | None = None
    drafted: int = 0
    accepted: int = 0
    retries: int = 0
    rounds: int = 0


class SpeculativeConsensus(Strategy[SpeculativeConsensusConfig]):
    """Speculative decoding for multi-sample inference (after Li et al. 2025, "Speculative
    Decoding for Multi-Sample Inference"): ``n`` paths sampled side by side, each drafting
    its next tokens from the consensus of the other paths (the continuation most of them
    wrote after the n-gram this path just wrote), with no draft model; ``leaders`` paths are
    sampled plainly first, since paths in lockstep are never ahead of each other. A draft is
    verified at once by the log-probabilities of its tokens (``port.logprobs_of``, one
    prefill) and kept token by token with probability p(token) (the rule min(1, p/q) for a
    deterministic draft); after a rejected token the next one is drawn from p without it
    (resampled until it differs), then ``chunk_tokens`` more are sampled before the next
    draft. Every path is therefore an exact sample of p at temperature 1 (the recipe's
    top-p/top-k must be off), and the answer is their majority vote, as in
    self-consistency. Cost per round and path: one scoring request (the path plus the draft
    in prompt tokens) and one sampled chunk; the accepted draft tokens are never generated.
    Knobs: n, leaders (1), match (4), draft_tokens (16), chunk_tokens (16), min_votes (1).
    It saves time only where verifying k tokens costs about one decode step (memory-bound
    decoding, a GPU) and reuses the path's KV cache; vLLM's prompt log-probabilities re-read
    the whole path, so on the CPU testbed it is slower than plain sampling
    (benchmarks/speculative_speed.py).
    """

    config_model = SpeculativeConsensusConfig
    description = "Multi-sample speculative decoding: drafts from the other paths, verified"
    needs_token_engine = True
    needs_given_logprobs = True

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        length = cfg.max_tokens or port.max_tokens
        paths = [_Path(base=port.root) for _ in range(cfg.n)]
        rngs = [random.Random(port.rng.getrandbits(64)) for _ in paths]
        lead = min(cfg.leaders, cfg.n)
        if lead:
            leaders = await port.sample(lead, max_tokens=length, temperature=1.0)
            for path, node in zip(paths, leaders, strict=False):
                path.ids, path.end = node.token_ids, node
        while True:
            open_paths = [i for i, p in enumerate(paths) if p.end is None]
            if not open_paths:
                break
            snapshot = [p.ids for p in paths]  # drafts read the paths as the round began
            drafts = {
                i: consensus_draft(
                    snapshot[i],
                    [ids for j, ids in enumerate(snapshot) if j != i],
                    match=cfg.match,
                    # room for a residual token and a sampled one after the draft
                    length=min(cfg.draft_tokens, length - len(snapshot[i]) - 2),
                    min_votes=cfg.min_votes,
                )
                for i in open_paths
            }
            _, exhausted = await gather_within_budget(
                [self._advance(port, paths[i], drafts[i], rngs[i], length) for i in open_paths]
            )
            if exhausted:
                break
        picked = self.select(port)
        drafted = sum(p.drafted for p in paths)
        accepted = sum(p.accepted for p in paths)
        detail = {
            "drafted_tokens": drafted,
            "accepted_tokens": accepted,
            "acceptance_rate": accepted / drafted if drafted else None,
            "written_tokens": sum(len(p.ids) for p in paths),
            "residual_retries": sum(p.retries for p in paths),
            "rounds": max(p.rounds for p in paths),
        }
        return SearchResult(picked.answer, picked.node_id, {**picked.detail, **detail})

    async def _advance(
        self, port: SearchPort, path: _Path, draft: tuple[int, ...], rng: random.Random, length: int
    ) -> None:
        """One round of one path: verify its draft, then sample a chunk."""
        path.rounds += 1
        rejected: int | None = None
        if draft:
            logprobs = await port.logprobs_of(path.base, draft)
            kept = accepted_length(logprobs, rng)
            path.drafted += len(draft)
            path.accepted += kept
            if kept:
                path.base = await port.extend(
                    path.base, draft[:kept], token_logprobs=logprobs[:kept]
                )
                path.ids += draft[:kept]
                if path.base.terminal:  # a drafted end of sequence was accepted
                    path.end = path.base
                    return
            if kept < len(draft):
                rejected = draft[kept]
        if rejected is not None and await self._residual(port, path, rejected):
            return
        chunk = min(self.config.chunk_tokens, length - len(path.ids))
        [child] = await port.expand(path.base, 1, one_step=False, max_tokens=chunk, temperature=1.0)
        path.ids += child.token_ids
        ended = port.status(child) == "failed" or child.finish_reason == "stop"
        if ended or len(path.ids) >= length:
            path.end = child
        else:  # cut by the chunk size: a forced copy carries the path on (finished nodes end)
            port.prune([child])
            path.base = await port.extend(
                path.base, child.token_ids, token_logprobs=child.token_logprobs
            )

    async def _residual(self, port: SearchPort, path: _Path, rejected: int) -> bool:
        """One token from p without ``rejected`` (the residual (p - q)+ of a deterministic
        draft), drawn from p until it differs, and put on the path; True if it ended it."""
        for attempt in range(RETRIES):
            [one] = await port.expand(path.base, 1, one_step=False, max_tokens=1, temperature=1.0)
            if port.status(one) == "failed":
                path.end = one
                return True
            if one.token_ids[:1] == (rejected,) and attempt < RETRIES - 1:
                port.prune([one])
                path.retries += 1
                continue
            path.ids += one.token_ids
            if one.finish_reason == "stop":  # the end of the sequence was drawn
                path.end = one
                return True
            port.prune([one])
            path.base = await port.extend(
                path.base, one.token_ids, token_logprobs=one.token_logprobs
            )
            return False
        return False

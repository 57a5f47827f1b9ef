"""Self-consistency with early hypothesis pruning by a confidence-weighted token set cover."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SampleStream, SearchPort, TreeView
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.sampling import budget_error_of
from branchwise.strategies.selection import weighted_vote
from branchwise.strategies.set_cover import Hypothesis, token_units, weighted_cover


class CoverPruningConfig(StrategyConfig):
    name: Literal["cover_pruning"] = "cover_pruning"
    n: int = Field(16, ge=1, description="Hypotheses started at once (all streamed in parallel).")
    interval: int = Field(
        32,
        ge=1,
        description="Tokens between pruning rounds: round r looks at every live hypothesis's "
        "first r x interval tokens.",
    )
    ngram: int = Field(
        1,
        ge=1,
        description="Lexical unit of the cover: 1 = the hypothesis's token set (the paper's), "
        "larger = distinct token n-grams (a stricter notion of covering).",
    )
    inherit_votes: bool = Field(
        True,
        description="An aborted hypothesis votes with the finished one whose same-length "
        "prefix shares most of its units (it was pruned as covered by the others); false: "
        "only finished hypotheses vote, as in plain self-consistency over the survivors.",
    )
    min_keep: int = Field(
        2,
        ge=1,
        description="Fewest live hypotheses a round keeps (the most confident fill up), so "
        "the vote never rests on one path while others could still run.",
    )


@dataclass(frozen=True)
class _Prefix:
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


class _Rounds:
    """Holds hypotheses at each checkpoint until every live one has arrived or finished,
    then decides which go on. Decisions read only each hypothesis's first ``checkpoint``
    tokens and whether it finished before it, so they do not depend on timing."""

    def __init__(self, count: int, config: CoverPruningConfig) -> None:
        self.config = config
        self.live = set(range(count))
        self.finished: dict[int, _Prefix] = {}
        self.waiting: dict[int, _Prefix] = {}
        self.verdicts: dict[int, asyncio.Future[bool]] = {}
        self.rounds = 0
        self.pruned: list[int] = []

    async def arrive(self, key: int, prefix: _Prefix) -> bool:
        """Wait at the checkpoint; True if this hypothesis goes on."""
        verdict: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting[key] = prefix
        self.verdicts[key] = verdict
        self._maybe_decide()
        return await verdict

    def finish(self, key: int, prefix: _Prefix) -> None:
        self.finished[key] = prefix
        self.leave(key)

    def leave(self, key: int) -> None:
        self.live.discard(key)
        self.waiting.pop(key, None)
        self.verdicts.pop(key, None)
        self._maybe_decide()

    def _maybe_decide(self) -> None:
        if not self.waiting or set(self.waiting) != self.live:
            return
        self.rounds += 1
        ngram = self.config.ngram
        finished_units: frozenset[tuple[int, ...]] = frozenset().union(
            *(token_units(p.token_ids, ngram) for p in self.finished.values())
        )
        candidates = [
            Hypothesis(key, token_units(p.token_ids, ngram), _confidence(p.logprobs))
            for key, p in sorted(self.waiting.items())
        ]
        kept = weighted_cover(candidates, finished_units, min_keep=self.config.min_keep)
        for key, verdict in sorted(self.verdicts.items()):
            if key not in kept:
                self.live.discard(key)
                self.pruned.append(key)
            verdict.set_result(key in kept)
        self.waiting.clear()
        self.verdicts.clear()


class CoverPruning(Strategy[CoverPruningConfig]):
    """Early hypothesis pruning for self-consistency (Sultan and Astudillo 2025,
    "Confidence-Weighted Token Set Cover for Early Hypothesis Pruning in Self-Consistency").

    All ``n`` hypotheses stream in parallel. Every ``interval`` tokens the live ones meet at a
    checkpoint; a greedy weighted set cover then keeps the hypotheses that, with the ones
    already finished, cover every token (``ngram`` = 1) any of them has written, each step
    adding the hypothesis with the most new tokens times its confidence (exp of its mean
    token logprob so far); at least ``min_keep`` live ones stay. The others are aborted at
    once (status "aborted", their tokens counted, no vote); the finished ones take a
    majority vote. The paper's fast cover algorithm is not public in detail here: this
    greedy cover and ``min_keep`` are our choices. Cost: at most ``n`` samples, each pruned
    one stopping at a checkpoint; token logprobs; no scorer calls. Knobs: ``n``,
    ``interval``, ``ngram``, ``min_keep``.
    """

    config_model = CoverPruningConfig
    description = (
        "Stream N samples; every few tokens abort those a confidence-weighted token cover "
        "leaves out; vote."
    )

    async def search(self, port: SearchPort) -> SearchResult:
        rounds = _Rounds(self.config.n, self.config)
        streams = [port.stream(port.root, one_step=False, logprobs=0) for _ in range(self.config.n)]
        outcomes = await asyncio.gather(
            *(self._hypothesis(key, stream, rounds) for key, stream in enumerate(streams)),
            return_exceptions=True,
        )
        budget_error = budget_error_of(outcomes)
        recorded = [s.node for s in streams if s.node is not None]
        if not recorded and budget_error is not None:
            raise budget_error
        picked = self.select(port)
        pruned = [streams[key].node for key in rounds.pruned]
        detail = {
            **picked.detail,
            "samples": len(recorded),
            "rounds": rounds.rounds,
            "pruned": len(pruned),
            "pruned_tokens": sum(len(n.token_ids) for n in pruned if n is not None),
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def select(self, tree: TreeView) -> SearchResult:
        """Majority vote of the finished hypotheses, each aborted one (with
        ``inherit_votes``) adding its vote to the finished hypothesis most like it."""
        finished = [n for n in tree.terminals() if n.answer is not None]
        weight = dict.fromkeys((n.id for n in finished), 1.0)
        inherited = 0
        if self.config.inherit_votes and finished:
            ngram = self.config.ngram
            for node in tree.children(tree.root):
                if tree.status(node) != "aborted" or not node.token_ids:
                    continue
                units = token_units(node.token_ids, ngram)
                heir = max(
                    finished,
                    key=lambda f: _similarity(
                        units, token_units(f.token_ids[: len(node.token_ids)], ngram)
                    ),
                )  # max keeps the first of equals: the earliest finished hypothesis
                weight[heir.id] += 1.0
                inherited += 1
        picked = weighted_vote(finished, lambda n: weight[n.id])
        return SearchResult(
            picked.answer,
            picked.node_id,
            {"voters": len(finished), "inherited": inherited, **picked.detail},
        )

    async def _hypothesis(self, key: int, stream: SampleStream, rounds: _Rounds) -> Node | None:
        interval = self.config.interval
        try:
            async with stream:
                checkpoint = interval
                last: _Prefix | None = None
                async for partial in stream:
                    ids, logprobs = partial.token_ids, partial.token_logprobs
                    last = _Prefix(ids, logprobs)
                    stopped = False
                    while len(ids) >= checkpoint and not stopped:
                        head = _Prefix(ids[:checkpoint], logprobs[:checkpoint])
                        stopped = not await rounds.arrive(key, head)
                        checkpoint += interval
                    if stopped:
                        stream.cut()
                        break
                else:
                    rounds.finish(key, last or _Prefix((), ()))
        finally:
            rounds.leave(key)  # no-op when it finished or was pruned; unblocks on errors
        return stream.node


def _similarity(a: frozenset[tuple[int, ...]], b: frozenset[tuple[int, ...]]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _confidence(logprobs: Sequence[float]) -> float:
    return math.exp(math.fsum(logprobs) / len(logprobs)) if logprobs else 0.0

"""Entropy-adaptive branching (EAGer): one path until the model is unsure, then fork."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.rewards.confidence import predictive_entropy
from branchwise.strategies.base import OptionallyScoredConfig, SearchResult, Strategy
from branchwise.strategies.selection import argmax, majority_vote


class EntropyBranchingConfig(OptionallyScoredConfig):
    name: Literal["entropy_branching"] = "entropy_branching"
    top_k_logprobs: int = Field(
        5, ge=2, le=20, description="Top-k logprobs per token (entropy estimate and fork options)."
    )
    entropy_threshold: float = Field(
        1.0, ge=0, description="Fork where the renormalised top-k entropy (nats) reaches this."
    )
    branch_factor: int = Field(
        3, ge=2, description="Branches per fork: the top tokens at the uncertain position."
    )
    max_paths: int = Field(
        8,
        ge=1,
        description="A problem's own share of paths (leaves); easy prompts use fewer and lend "
        "the rest, so a problem may end with up to max_paths + borrow_limit.",
    )
    initial_paths: int = Field(1, ge=1, description="Paths sampled from the prompt at the start.")
    borrow_limit: int = Field(
        8,
        ge=0,
        description="Most extra paths one problem may take from the run's pool of paths other "
        "problems left unused (0: lend only, never borrow).",
    )
    min_gap: int = Field(
        4, ge=1, description="Tokens a path writes after its start (or fork) before it may fork."
    )
    selection: Literal["majority", "scorer"] = Field(
        "majority", description="majority: vote over finished paths; scorer: best by `scorer`."
    )

    @model_validator(mode="after")
    def _consistent(self) -> EntropyBranchingConfig:
        ceiling = math.log(self.top_k_logprobs)
        if self.entropy_threshold >= ceiling:
            raise ValueError(
                f"entropy_threshold {self.entropy_threshold} can never be reached with "
                f"top_k_logprobs {self.top_k_logprobs} (top-k entropy < ln k = {ceiling:.3f})"
            )
        if self.branch_factor > self.top_k_logprobs:
            raise ValueError(
                f"branch_factor ({self.branch_factor}) exceeds top_k_logprobs "
                f"({self.top_k_logprobs}): a fork takes its branches from the top-k tokens"
            )
        if self.initial_paths > self.max_paths:
            raise ValueError(
                f"initial_paths ({self.initial_paths}) exceeds max_paths ({self.max_paths})"
            )
        if self.selection == "scorer" and not self.scorer:
            raise ValueError("selection 'scorer' needs `scorer` (a scorer name from the recipe)")
        return self


class EntropyBranching(Strategy[EntropyBranchingConfig]):
    """Entropy-adaptive branching after EAGer (Scalena et al. 2025, "EAGer").

    Each path streams with top-k logprobs. At the first position (at least ``min_gap``
    tokens into the segment) whose renormalised top-k entropy reaches ``entropy_threshold``,
    the stream is aborted (its partial tokens stay as an aborted node) and the path forks:
    a forced trunk node copies the tokens before the fork, and each of the top
    ``branch_factor`` tokens there becomes a forced child from which a new path streams
    (so every branch prompt is the parent's exact tokens + the prefix + the alternative).
    Elsewhere a path stays single. Cost: one streamed request per path segment; forced
    tokens are not sampled; no scorer calls unless ``selection=scorer``.

    Budget: ``max_paths`` is one problem's share of paths (leaves). Each path carries a part
    of that share and a fork splits its part among the branches (never more branches than the
    part), so decisions never depend on which branch runs faster. A path whose part is down
    to one does not fork; it notes its first uncertain token as a *missed fork* and goes on.

    Then EAGer's reallocation: a prompt that never hit an uncertain token leaves most of its
    share unspent, and the problems that branch most want more. When its paths are done, a
    problem spends its own unused paths on its missed forks, lends the rest to the run's
    pool (``ctx.lending``), and borrows up to ``borrow_limit`` more from paths earlier problems
    of the run left unused (none once its own budget ran out). The extra paths go
    round-robin over the missed forks (in node order): each is a forced trunk up to the
    uncertain token plus one of its other top tokens, grown to the end without further forks.
    Borrowing draws on the problems before it once they have finished (the run's lending
    pass, in problem order), so what a problem gets does not depend on timing while no token
    or time budget binds; it waits for the pass without its concurrency slot, so no other
    problem waits for it (see ``orchestrator.lending``). A
    fork is decided by the tokens alone: the stream is cut at the uncertain token even if the
    engine had already finished the sample.
    """

    config_model = EntropyBranchingConfig
    needs_token_engine = True
    description = "Sample one path and fork into top-k alternatives where token entropy is high."

    def __init__(self, config: EntropyBranchingConfig) -> None:
        super().__init__(config)
        self._forks: list[str] = []
        self._missed: list[MissedFork] = []
        self._budget_hit = False

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        self._forks, self._missed, self._budget_hit = [], [], False
        outcomes = await asyncio.gather(
            *(
                self._path(ctx, ctx.root, share)
                for share in _split(cfg.max_paths, cfg.initial_paths)
            ),
            return_exceptions=True,
        )
        if all(isinstance(o, BudgetExhausted) for o in outcomes) and len(ctx) == 1:
            raise next(o for o in outcomes if isinstance(o, BudgetExhausted))
        _leaves(outcomes)  # re-raises anything but a budget stop
        leaves = sum(o for o in outcomes if isinstance(o, int))
        # Out of budget anywhere (a fork's branch too): lend what is left, borrow nothing.
        stopped = self._budget_hit or ctx.budget.exhausted
        late, pool = await self._reallocate(ctx, leaves, stopped)
        finished = [n for n in ctx.terminals() if n.answer is not None]
        if cfg.selection == "scorer" and cfg.scorer is not None and finished:
            await ctx.score(finished, cfg.scorer)
        picked = self.select(ctx)
        detail: dict[str, object] = {
            "paths": leaves + late,
            "unused_paths": pool["lent"],
            "forks": len(self._forks),
            "fork_nodes": sorted(self._forks),
            "missed_forks": len(self._missed),
            "late_paths": late,
            "borrowed_paths": pool["borrowed"],
            "finished": len(finished),
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    async def _reallocate(
        self, ctx: SearchPort, leaves: int, stopped: bool
    ) -> tuple[int, dict[str, int]]:
        """Own unused paths, then borrowed ones, to the missed forks; (paths grown, ledger)."""
        cfg = self.config
        missed = sorted(self._missed, key=lambda m: (path_key(m.start.id), m.position))
        want = 0 if stopped else sum(len(m.alternatives) for m in missed)
        own = max(cfg.max_paths - leaves, 0)
        borrowed = 0
        if ctx.lending is not None:
            borrowed = await ctx.lending.exchange(
                lend=own - want, want=min(want - own, cfg.borrow_limit)
            )
        extra = min(want, own) + borrowed
        picks: list[list[int]] = [[] for _ in missed]
        for rank in range(cfg.branch_factor - 1):  # round-robin: every missed fork first
            for slot, fork in enumerate(missed):
                if extra and rank < len(fork.alternatives):
                    picks[slot].append(rank)
                    extra -= 1
        branches: list[Node] = []
        try:
            for fork, ranks in zip(missed, picks, strict=True):
                if ranks:
                    branches += await self._late_branches(ctx, fork, ranks)
        except BudgetExhausted:
            pass  # the node budget ends the late branches; grow the ones that exist
        outcomes = await asyncio.gather(
            *(self._path(ctx, b, 1, note_missed=False) for b in branches),
            return_exceptions=True,
        )
        return _leaves(outcomes), {"lent": max(own - want, 0), "borrowed": borrowed}

    async def _late_branches(
        self, ctx: SearchPort, fork: MissedFork, ranks: list[int]
    ) -> list[Node]:
        sampled = fork.sampled
        trunk = await ctx.extend(
            fork.start,
            sampled.token_ids[: fork.position],
            token_logprobs=sampled.token_logprobs[: fork.position],
        )
        self._forks.append(trunk.id)
        children = []
        for rank in ranks:
            token, logprob = fork.alternatives[rank]
            lp = (logprob,) if logprob is not None else ()
            children.append(await ctx.extend(trunk, (token,), token_logprobs=lp))
        return children

    async def _path(
        self, ctx: SearchPort, start: Node, share: int, *, note_missed: bool = True
    ) -> int:
        """Grow one path from ``start``; returns how many leaves it ended as (<= share)."""
        try:
            return await self._grow(ctx, start, share, note_missed)
        except BudgetExhausted:
            self._budget_hit = True
            raise

    async def _grow(self, ctx: SearchPort, start: Node, share: int, note_missed: bool) -> int:
        cfg = self.config
        if start.terminal:  # a forced end-of-sequence token finished this branch
            return 1
        written = ctx.written_tokens(start)
        room = ctx.max_tokens - written
        if room < 1:
            return 1
        fork_at: int | None = None
        missed_at: int | None = None
        options: tuple[int, ...] = ()
        async with ctx.stream(
            start, one_step=False, max_tokens=room, logprobs=cfg.top_k_logprobs
        ) as stream:
            seen = 0
            async for partial in stream:
                looking = share >= 2 or (note_missed and missed_at is None)
                if looking:
                    found = self._fork_position(partial.top_logprobs, partial.top_token_ids, seen)
                    if found is not None:
                        options = partial.top_token_ids[found]
                        if share >= 2:
                            fork_at = found
                            stream.cut()  # forks here even if the engine already finished
                            break
                        missed_at = found  # out of share: note it and keep going
                seen = len(partial.top_logprobs)
        node = stream.node
        assert node is not None
        if fork_at is not None:  # the stream was cut there, so it is recorded as aborted
            return await self._fork(ctx, start, node, fork_at, options, share)
        if missed_at is not None and not stream.aborted and missed_at < len(node.token_ids):
            self._note_missed(start, node, missed_at, options)
        return 1

    def _note_missed(
        self, start: Node, node: Node, position: int, options: tuple[int, ...]
    ) -> None:
        """Remember a fork this path had no share for: the top tokens it did not sample."""
        sampled = node.token_ids[position]
        top = node.top_logprobs[position] if position < len(node.top_logprobs) else ()
        alternatives = tuple(
            (token, top[rank] if rank < len(top) else None)
            for rank, token in enumerate(options)
            if token != sampled
        )[: self.config.branch_factor - 1]
        if alternatives:
            self._missed.append(MissedFork(start, node, position, alternatives))

    def _fork_position(
        self,
        tops: tuple[tuple[float, ...], ...],
        top_ids: tuple[tuple[int, ...], ...],
        start: int,
    ) -> int | None:
        for pos in range(max(start, self.config.min_gap), len(tops)):
            top = tops[pos]
            options = top_ids[pos] if pos < len(top_ids) else ()
            forkable = len(top) >= 2 and len(options) >= 2
            if forkable and predictive_entropy(top) >= self.config.entropy_threshold:
                return pos
        return None

    async def _fork(
        self,
        ctx: SearchPort,
        start: Node,
        sampled: Node,
        pos: int,
        options: tuple[int, ...],
        share: int,
    ) -> int:
        trunk = await ctx.extend(
            start, sampled.token_ids[:pos], token_logprobs=sampled.token_logprobs[:pos]
        )
        self._forks.append(trunk.id)
        top = sampled.top_logprobs[pos]
        count = min(self.config.branch_factor, share, len(options))
        branches: list[tuple[Node, int]] = []
        for index, share_i in enumerate(_split(share, count)):
            lp = top[index] if index < len(top) else None
            child = await ctx.extend(
                trunk, (options[index],), token_logprobs=(lp,) if lp is not None else ()
            )
            branches.append((child, share_i))
        outcomes = await asyncio.gather(
            *(self._path(ctx, c, s) for c, s in branches),
            return_exceptions=True,
        )
        return _leaves(outcomes)

    def select(self, tree: TreeView) -> SearchResult:
        """A vote over the finished paths, or the best by ``scorer`` once all are scored."""
        finished = [n for n in tree.terminals() if n.answer is not None]
        scorer = self.config.scorer
        picked = majority_vote(finished)
        if (
            self.config.selection == "scorer"
            and scorer is not None
            and finished
            and all(tree.score_of(n, scorer) is not None for n in finished)
        ):
            picked = argmax(finished, lambda n: tree.value(n, scorer))
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))


@dataclass(frozen=True)
class MissedFork:
    """An uncertain token a path met with no share left to fork: where, and the other tokens."""

    start: Node
    sampled: Node
    position: int
    alternatives: tuple[tuple[int, float | None], ...]


def _split(total: int, parts: int) -> list[int]:
    """``total`` paths shared by ``parts`` branches as evenly as possible, earlier ones first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _leaves(outcomes: list[int | BaseException]) -> int:
    """Leaves grown by sibling paths; one that could not start still holds its node."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BudgetExhausted):
            raise outcome
    return sum(o if isinstance(o, int) else 1 for o in outcomes)

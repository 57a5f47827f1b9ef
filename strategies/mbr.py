"""Minimum Bayes risk: pick the candidate that agrees most with the rest of the pool."""

from __future__ import annotations

import asyncio
import math
from typing import Literal

from pydantic import Field, model_validator

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.mbr_utilities import ChrF, UtilityName, build_utility
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import argmax


class MBRConfig(StrategyConfig):
    name: Literal["mbr"] = "mbr"
    n: int = Field(16, ge=1, description="Solutions sampled (the pool and the candidates).")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    utility: UtilityName = Field(
        "chrf",
        description="answer_equality (MBR = majority vote), chrf (character n-gram F-score "
        "of the solution texts) or judge (a pairwise recipe scorer named by `scorer`).",
    )
    chrf_order: int = Field(6, ge=1, le=12, description="Longest character n-gram for chrf.")
    chrf_beta: float = Field(
        1.0,
        gt=0,
        description="Recall weight of chrf. 1 (chrF1, our default) keeps it symmetric, so each "
        "pair is computed once; sacrebleu's CHRF default is 2 (chrF2, recall-heavy, asymmetric).",
    )
    scorer: str | None = Field(
        None, description="Recipe scorer (a PairwiseScorer) for utility=judge."
    )
    judge_symmetric: bool = Field(
        True, description="The judge gives both orders of a pair the same value (ask once)."
    )
    pair_batch: int = Field(64, ge=1, description="Pairs per utility call (judge batches).")

    @model_validator(mode="after")
    def _judge_has_scorer(self) -> MBRConfig:
        if self.utility == "judge" and not self.scorer:
            raise ValueError("utility 'judge' needs `scorer` (a pairwise scorer in the recipe)")
        if self.utility != "judge" and self.scorer:
            raise ValueError(f"`scorer` is only used by utility 'judge', not {self.utility!r}")
        return self


class MBR(Strategy[MBRConfig]):
    """Minimum Bayes risk decoding (Kumar & Byrne 2004; for LLM reasoning e.g. Bertsch et al. 2023).

    Samples ``n`` solutions; the ones with an answer form both the candidates and the
    pseudo-references. Each candidate's expected utility is its mean utility against every
    *other* pool member (self-agreement is the same for all and would only dilute it); the
    highest wins, exact ties to the earliest node (sums are correctly rounded with math.fsum,
    so they do not depend on accumulation order). Cost: n samples plus n(n-1)/2 utility
    evaluations for a symmetric utility (n(n-1) otherwise). chrF counts each candidate's
    n-grams once and scores the whole pool in a worker thread (off the event loop); beta = 1
    by default (symmetric chrF1), where sacrebleu defaults to 2. With ``judge`` each pair is
    one scorer call, in batches of ``pair_batch``. Pairs the utility could not judge are left
    out of the means; a candidate with no judged pair cannot win.
    """

    config_model = MBRConfig
    description = "Sample N solutions and return the one with the highest mean utility to the rest."

    def __init__(self, config: MBRConfig) -> None:
        super().__init__(config)
        self.utility = build_utility(
            config.utility,
            chrf_order=config.chrf_order,
            chrf_beta=config.chrf_beta,
            scorer=config.scorer,
            judge_symmetric=config.judge_symmetric,
        )

    async def search(self, ctx: SearchPort) -> SearchResult:
        nodes = await sample_solutions(ctx, self.config.n, self.config.batch)
        pool = [n for n in nodes if n.answer is not None]
        expected, computed, failed = await self._expected_utilities(ctx, pool)
        picked = argmax(pool, lambda n: expected[n.id])
        detail = {
            "samples": len(nodes),
            "pool": len(pool),
            "utility": self.config.utility,
            "pairs": computed,
            "failed_pairs": failed,
            "expected_utility": {k: round(v, 6) for k, v in expected.items() if v is not None},
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    async def _expected_utilities(
        self, ctx: SearchPort, pool: list[Node]
    ) -> tuple[dict[str, float | None], int, int]:
        """Mean utility of each pool member against the others; pairs asked; pairs failed.

        Each member's values are summed with math.fsum (correctly rounded, so the sum does not
        depend on the order the values arrive in): exactly tied candidates stay exactly tied
        and the earliest node wins, as documented.
        """
        if len(pool) == 1:
            return {pool[0].id: 1.0}, 0, 0
        size = len(pool)
        symmetric = self.utility.symmetric
        pairs_asked = size * (size - 1) // (2 if symmetric else 1)
        if isinstance(self.utility, ChrF):
            texts = [ctx.solution(n) for n in pool]
            table = await self.utility.matrix(texts)  # in a worker thread
            expected: dict[str, float | None] = {
                node.id: math.fsum(table[k][:k] + table[k][k + 1 :]) / (size - 1)
                for k, node in enumerate(pool)
            }
            return expected, pairs_asked, 0
        if symmetric:
            index_pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
        else:
            index_pairs = [(i, j) for i in range(size) for j in range(size) if i != j]
        step = self.config.pair_batch
        batches = [index_pairs[s : s + step] for s in range(0, len(index_pairs), step)]
        results = await asyncio.gather(
            *(self.utility(ctx, [(pool[i], pool[j]) for i, j in batch]) for batch in batches)
        )
        values: list[list[float]] = [[] for _ in range(size)]
        failed = 0
        for batch, got in zip(batches, results, strict=True):
            for (i, j), value in zip(batch, got, strict=True):
                if value is None:
                    failed += 1
                    continue
                values[i].append(value)
                if symmetric:
                    values[j].append(value)
        expected = {
            node.id: math.fsum(values[k]) / len(values[k]) if values[k] else None
            for k, node in enumerate(pool)
        }
        return expected, len(index_pairs), failed

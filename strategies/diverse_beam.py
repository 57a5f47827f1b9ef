"""Diverse beam search at the step level: beam groups penalised for copying earlier groups."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.beam_search import grow_step
from branchwise.strategies.step_search import (
    FinalRule,
    choose_final,
    gather_within_budget,
    ranked,
    select_by_values,
)

Similarity = Literal["exact", "ngram"]


class DiverseBeamConfig(ScoredConfig):
    name: Literal["diverse_beam_search"] = "diverse_beam_search"
    groups: int = Field(2, ge=1, description="Beam groups (G), chosen in turn at each depth.")
    group_width: int = Field(2, ge=1, description="Open paths each group keeps (B / G).")
    expansions: int = Field(4, ge=1, description="Next steps sampled per kept path (M).")
    diversity_strength: float = Field(
        0.5,
        ge=0.0,
        description="lambda: a candidate's value loses lambda times its summed similarity to "
        "the steps earlier groups kept at the same depth (0: G independent beam searches).",
    )
    similarity: Similarity = Field(
        "ngram",
        description="How alike two steps are: exact (1 if the step texts match, the step-level "
        "Hamming penalty) or ngram (Jaccard overlap of the steps' token n-grams).",
    )
    ngram: int = Field(2, ge=1, description="n for the ngram similarity.")
    max_depth: int = Field(16, ge=1, description="Most steps a path may take.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    final: FinalRule = Field(
        "best",
        description="Answer among every finished path of every group: best, weighted_vote or "
        "vote (values without the diversity penalty).",
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


def step_similarity(a: Node, b: Node, how: Similarity, n: int = 2) -> float:
    """How alike two steps are, in [0, 1]: their texts equal, or their token n-gram overlap."""
    if how == "exact":
        return 1.0 if a.text.strip() == b.text.strip() else 0.0
    grams_a, grams_b = _ngrams(a.token_ids, n), _ngrams(b.token_ids, n)
    if not grams_a or not grams_b:
        return 1.0 if a.token_ids == b.token_ids else 0.0
    return len(grams_a & grams_b) / len(grams_a | grams_b)


def _ngrams(tokens: Sequence[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def choose_group_beams(
    pools: Sequence[Sequence[Node]],
    value: Callable[[Node], float | None],
    width: int,
    penalty: Callable[[Node, Sequence[Node]], float],
) -> list[list[Node]]:
    """Each group's next beam, group by group: the ``width`` best of its open candidates by
    value minus ``penalty`` against the steps the earlier groups kept (ties: earlier id)."""
    kept_before: list[Node] = []
    beams: list[list[Node]] = []
    for pool in pools:
        earlier = list(kept_before)

        def penalised(node: Node, earlier: list[Node] = earlier) -> float | None:
            v = value(node)
            return None if v is None else v - penalty(node, earlier)

        beam = ranked(pool, penalised)[:width]
        beams.append(beam)
        kept_before += beam
    return beams


class DiverseBeamSearch(Strategy[DiverseBeamConfig]):
    """Diverse beam search (Vijayakumar et al. 2018, "Diverse Beam Search: Decoding Diverse
    Solutions from Neural Sequence Models", AAAI), at the step level with a step-level scorer.

    The beam is split into G groups of B/G paths. At each depth every kept path samples M next
    steps (all groups at once: a step is sampled from the policy alone, so only the choice
    waits for the groups before it); then group by group, each keeps its B/G best open
    candidates by value minus ``diversity_strength`` times their summed similarity to the
    steps the earlier groups kept at this depth (exact text match or token n-gram overlap),
    so later groups are pushed off the paths earlier groups already hold. Finished
    candidates are collected as in beam search; the answer is picked among all of them by
    ``final`` on their unpenalised values. Cost per depth: B generation requests of n=M and
    B*M scorer calls, plus O((B*M)*B) step comparisons. Knobs: ``groups`` (G),
    ``group_width`` (B/G), ``expansions`` (M), ``diversity_strength`` (lambda),
    ``similarity`` (and ``ngram``), ``scorer`` (and ``aggregation``), ``max_depth``,
    ``final``.
    """

    config_model = DiverseBeamConfig
    description = "Beam search in G groups, each penalised for repeating earlier groups' steps."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        values: dict[str, float] = {}
        finished: list[Node] = []
        exhausted = False
        depth = 0
        kept_by_depth: list[list[list[str]]] = []

        def value_of(node: Node) -> float | None:
            return values.get(node.id)

        # depth 0: one request from the prompt, split into the groups' first candidates
        grown, exhausted = await gather_within_budget(
            [
                grow_step(
                    port, port.root, cfg.groups * cfg.expansions, cfg.scorer, cfg.step_max_tokens
                )
            ]
        )
        first = grown[0] or []
        groups_of: list[list[tuple[Node, float | None]]] = [
            first[g * cfg.expansions : (g + 1) * cfg.expansions] for g in range(cfg.groups)
        ]
        while True:
            pools: list[list[Node]] = []
            for candidates in groups_of:
                values.update({n.id: v for n, v in candidates if v is not None})
                valued = [n for n, v in candidates if v is not None]
                finished += sorted((n for n in valued if n.terminal), key=lambda n: path_key(n.id))
                pools.append([n for n in valued if not n.terminal])
            beams = choose_group_beams(pools, value_of, cfg.group_width, self._penalty)
            kept = {n.id for beam in beams for n in beam}
            port.prune([n for pool in pools for n in pool if n.id not in kept])
            kept_by_depth.append([[n.id for n in beam] for beam in beams])
            depth += 1
            growing = [[n for n in beam if n.depth < cfg.max_depth] for beam in beams]
            if exhausted or not any(growing):
                break
            flat = [n for beam in growing for n in beam]
            results, exhausted = await gather_within_budget(
                [grow_step(port, n, cfg.expansions, cfg.scorer, cfg.step_max_tokens) for n in flat]
            )
            by_node = {n.id: r or [] for n, r in zip(flat, results, strict=True)}
            groups_of = [[pair for n in beam for pair in by_node[n.id]] for beam in growing]
        picked = choose_final(finished, value_of, cfg.final)
        detail = {
            "finished": len(finished),
            "distinct_answers": len({n.answer for n in finished if n.answer is not None}),
            "depth": depth,
            "group_beams": kept_by_depth,
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _penalty(self, node: Node, earlier: Sequence[Node]) -> float:
        cfg = self.config
        if cfg.diversity_strength == 0.0 or not earlier:
            return 0.0
        similar = sum(step_similarity(node, e, cfg.similarity, cfg.ngram) for e in earlier)
        return cfg.diversity_strength * similar

    def select(self, tree: TreeView) -> SearchResult:
        """Among every finished path the tree holds, by ``final`` over stored values."""
        picked = select_by_values(tree, self.config.scorer, self.config.final)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

"""TreeBoN: best-of-N grown as a speculative tree, pruned early by a partial reward."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.step_search import (
    choose_final,
    gather_within_budget,
    ranked,
    select_by_values,
)


class TreeBoNConfig(ScoredConfig):
    name: Literal["treebon"] = "treebon"
    n: int = Field(8, ge=1, description="Paths alive in every layer (N), as in best-of-N.")
    branching: int = Field(
        2, ge=1, description="Children per kept parent (N_c); N // N_c parents are kept."
    )
    layers: int = Field(
        3, ge=1, description="Pruning rounds; the children of the last one are written to the end."
    )
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    final_scorer: str | None = Field(
        None,
        description="Scorer (by recipe name) for the final best-of-N over finished answers "
        "(an ORM or a verifier may serve); unset: ``scorer``.",
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)


class TreeBoN(Strategy[TreeBoNConfig]):
    """TreeBoN (Qiu et al. 2024, "TreeBoN: Enhancing Inference-Time Alignment with
    Speculative Tree-Search and Best-of-N Sampling").

    Start N paths from the prompt, each one step long (the paper cuts fixed token chunks; on
    this port a sample cut by length is a finished path, so segments are reasoning steps). In
    each of ``layers`` rounds, value the open partial paths with the partial reward
    (``scorer``: a PRM here; the paper's implicit DPO reward needs a reference policy's
    log-probabilities, which no engine here gives), keep the best N // N_c, prune the rest
    before they cost more tokens, and branch each kept path into N_c children, so N paths stay
    alive; the last round's children are written to the end. The answer is best-of-N by
    ``final_scorer`` over every finished path (paths that finished early stay candidates).
    Cost: about N samples' tokens in all (the pruned paths stop after their segment, and
    siblings share their prefix in the cache), N scorer calls per round plus one per finished
    path, ``layers`` + 1 rounds of generation. Knobs: ``n`` (N), ``branching`` (N_c),
    ``layers``, ``step_max_tokens``, ``scorer`` (and ``aggregation``), ``final_scorer``. Ties
    go to the earlier node id.
    """

    config_model = TreeBoNConfig
    description = "Best-of-N as a tree: prune partial paths by a partial reward, branch the best."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        grown, exhausted = await gather_within_budget(
            [port.expand(port.root, cfg.n, max_tokens=cfg.step_max_tokens)]
        )
        frontier = grown[0] or []
        finished: list[Node] = []
        partial: dict[str, float | None] = {}
        rounds = 0
        for layer in range(cfg.layers):
            finished += [n for n in frontier if n.terminal]
            growing = [n for n in frontier if not n.terminal]
            if exhausted or not growing:
                break
            valued, exhausted = await gather_within_budget([port.values(growing, cfg.scorer)])
            if valued[0] is None:
                break
            partial.update(zip((n.id for n in growing), valued[0], strict=True))
            order = ranked(
                [n for n in growing if partial[n.id] is not None], lambda n: partial[n.id]
            )
            kept = order[: max(1, cfg.n // cfg.branching)]
            port.prune(order[len(kept) :])
            last = layer == cfg.layers - 1
            children, exhausted = await gather_within_budget(
                [
                    port.expand(
                        parent,
                        cfg.branching,
                        one_step=not last,
                        max_tokens=None if last else cfg.step_max_tokens,
                    )
                    for parent in kept
                ]
            )
            frontier = [c for group in children if group for c in group]
            rounds += 1
        finished += [n for n in frontier if n.terminal and n not in finished]
        finished.sort(key=lambda n: path_key(n.id))
        judge = cfg.final_scorer or cfg.scorer
        final_values, _ = await gather_within_budget([port.values(finished, judge)])
        scored = dict(zip((n.id for n in finished), final_values[0] or [], strict=False))
        picked = choose_final(finished, lambda n: scored.get(n.id), "best")
        detail = {
            "finished": len(finished),
            "rounds": rounds,
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def select(self, tree: TreeView) -> SearchResult:
        """The best finished path by the final scorer's stored values."""
        picked = select_by_values(tree, self.config.final_scorer or self.config.scorer, "best")
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

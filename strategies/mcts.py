"""Monte Carlo tree search over reasoning steps (UCT or PUCT, PRM values, optional rollouts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from core.errors import BudgetExhausted
from core.graph import Node, path_key
from rewards.aggregate import Aggregation
from strategies.base import SearchResult, Strategy, StrategyConfig
from strategies.selection import Selection
from strategies.step_search import (
    choose_final,
    drop_duplicates,
    path_values,
    settle,
    stored_value,
)
from strategies.tree_policy import ChildStats, TreePolicy, select_child, sibling_priors

if TYPE_CHECKING:
    from orchestrator.context import SearchContext


class MCTSConfig(StrategyConfig):
    name: Literal["mcts"] = "mcts"
    iterations: int = Field(
        32, ge=1, description="Simulations (select, expand, evaluate, back up)."
    )
    expansion_width: int = Field(3, ge=1, description="Next steps sampled when a leaf expands.")
    policy: TreePolicy = Field(
        "uct", description="uct: Q + c*sqrt(ln N/n); puct: Q + c*P*sqrt(N)/(1+n), P from logprobs."
    )
    exploration: float = Field(1.0, ge=0, description="Exploration constant c.")
    scorer: str = Field(description="Step-level scorer (by recipe name) valuing partial paths.")
    aggregation: Aggregation = Field(
        "min", description="How a path's step scores become its value: min, product, last, mean."
    )
    verifier: str | None = Field(
        None, description="Scorer valuing finished paths instead of `scorer` (e.g. a verifier)."
    )
    rollout: bool = Field(
        False, description="Value a new leaf by one sampled rollout to the end (else the scorer)."
    )
    rollout_max_tokens: int | None = Field(
        None, ge=1, description="Token cap of a rollout (default: sampling.max_tokens)."
    )
    max_depth: int = Field(16, ge=1, description="Deepest step; nodes there are not expanded.")
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )
    merge_duplicates: bool = Field(
        True,
        description="Sibling steps with identical text are one tree node (copies pruned unvalued).",
    )
    parallel: int = Field(1, ge=1, description="Simulations run concurrently per wave.")
    virtual_loss: float = Field(
        1.0, ge=0, description="Zero-valued visits added to a path while its simulation runs."
    )
    final: Literal["best", "weighted_vote", "vote", "most_visited"] = Field(
        "best",
        description="Answer: best (highest-valued finished path, rollouts included), "
        "weighted_vote / vote over finished paths, or most_visited (follow visits from the root).",
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        # with rollouts, `scorer` only ever values finished rollouts (a test-based judge works)
        return () if self.rollout else ("scorer",)


@dataclass
class _Tree:
    """Search statistics beside the graph; only scored nodes join the tree."""

    children: dict[str, list[str]] = field(default_factory=dict)
    visits: dict[str, float] = field(default_factory=dict)
    value_sum: dict[str, float] = field(default_factory=dict)
    prior: dict[str, float] = field(default_factory=dict)
    virtual: dict[str, float] = field(default_factory=dict)
    value: dict[str, float] = field(default_factory=dict)
    finished: dict[str, Node] = field(default_factory=dict)
    rollout_of: dict[str, str] = field(default_factory=dict)

    def stats(self, node_id: str) -> ChildStats:
        virtual = self.virtual.get(node_id, 0.0)
        return ChildStats(
            node_id,
            self.visits.get(node_id, 0.0) + virtual,
            self.value_sum.get(node_id, 0.0),
            self.prior.get(node_id, 1.0),
        )

    def backup(self, path: list[str], values: list[float]) -> None:
        for node_id in path:
            self.visits[node_id] = self.visits.get(node_id, 0.0) + len(values)
            self.value_sum[node_id] = self.value_sum.get(node_id, 0.0) + sum(values)


Outcome = list[tuple[Node, float, float]]  # (node, value, prior); one entry for a revisit


class MCTS(Strategy):
    """Monte Carlo tree search over steps (Kocsis & Szepesvári 2006; PUCT as in AlphaZero;
    for LLM reasoning e.g. ReST-MCTS*, rStar).

    Each simulation selects a path from the root by UCT or PUCT (prior: exp(step logprob)
    normalised among siblings), expands the leaf into ``expansion_width`` sampled next steps
    (identical siblings merged), values each new node (the step-level scorer, a ``verifier``
    for finished paths, or, with ``rollout``, the value of one sampled completion to the end),
    and backs the values up as a running mean. A finished or depth-capped leaf is not
    expanded: its value is backed up again. ``parallel`` simulations run per wave with virtual
    loss steering them apart; a wave's results are backed up in selection order after it ends,
    so the tree depends on the seed only, never on completion order. Cost per simulation: one
    request of n=``expansion_width`` and as many scorer calls (plus one rollout each with
    ``rollout``). The answer is the best-valued finished path, a vote, or the most visited
    line of play.
    """

    config_model = MCTSConfig
    description = "MCTS over steps: UCT/PUCT selection, PRM or rollout values, mean backup."

    def __init__(self, config: MCTSConfig) -> None:
        super().__init__(config)
        self.cfg = config

    async def search(self, ctx: SearchContext) -> SearchResult:
        cfg = self.cfg
        tree = _Tree()
        done, exhausted = 0, False
        while done < cfg.iterations and not exhausted:
            wave: list[list[str]] = []
            for _ in range(min(cfg.parallel, cfg.iterations - done)):
                path = self._select(tree, ctx.root.id)
                if any(path[-1] == other[-1] for other in wave):
                    break
                for node_id in path:
                    tree.virtual[node_id] = tree.virtual.get(node_id, 0.0) + cfg.virtual_loss
                wave.append(path)
            outcomes, exhausted = await settle(
                [self._simulate(ctx, tree, ctx.graph.node(p[-1])) for p in wave]
            )
            tree.virtual.clear()
            for path, outcome in zip(wave, outcomes, strict=True):
                if not outcome:
                    continue
                for node, value, prior in outcome:
                    if node.id != path[-1]:
                        tree.children.setdefault(path[-1], []).append(node.id)
                        tree.value[node.id], tree.prior[node.id] = value, prior
                        tree.visits[node.id], tree.value_sum[node.id] = 1.0, value
                tree.backup(path, [value for _, value, _ in outcome])
            done += len(wave)
        picked = self._final(ctx, tree)
        detail = {
            "simulations": done,
            "tree_nodes": len(tree.value),
            "root_visits": tree.visits.get(ctx.root.id, 0.0),
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _select(self, tree: _Tree, root_id: str) -> list[str]:
        path = [root_id]
        while tree.children.get(path[-1]):
            kids = [tree.stats(k) for k in tree.children[path[-1]]]
            parent = tree.stats(path[-1]).visits
            path.append(select_child(kids, parent, self.cfg.exploration, self.cfg.policy))
        return path

    async def _simulate(self, ctx: SearchContext, tree: _Tree, leaf: Node) -> Outcome:
        cfg = self.cfg
        if leaf.id in tree.value and (leaf.terminal or leaf.depth >= cfg.max_depth):
            return [(leaf, tree.value[leaf.id], 1.0)]
        logprobs = 0 if cfg.policy == "puct" else None
        children = await ctx.expand(
            leaf, cfg.expansion_width, max_tokens=cfg.step_max_tokens, logprobs=logprobs
        )
        if cfg.merge_duplicates:
            known = [ctx.graph.node(c) for c in tree.children.get(leaf.id, [])]
            children = drop_duplicates(ctx, children, known)
        try:
            values = await self._evaluate(ctx, tree, children)
        except BudgetExhausted:
            ctx.prune(children)  # never valued, never part of the tree
            raise
        priors = sibling_priors([c.segment_logprob if c.token_logprobs else None for c in children])
        outcome: Outcome = []
        for child, value, prior in zip(children, values, priors, strict=True):
            if value is not None:
                outcome.append((child, value, prior))
                if child.terminal:
                    tree.finished[child.id] = child
        return outcome

    async def _evaluate(
        self, ctx: SearchContext, tree: _Tree, children: list[Node]
    ) -> list[float | None]:
        cfg = self.cfg
        ends = [c for c in children if c.terminal]
        steps = [c for c in children if not c.terminal]
        values: dict[str, float | None] = dict(
            zip([c.id for c in ends], await self._finished_values(ctx, ends), strict=True)
        )
        if cfg.rollout:
            rollouts, exhausted = await settle(
                [ctx.expand(c, 1, one_step=False, max_tokens=cfg.rollout_max_tokens) for c in steps]
            )
            if exhausted:
                raise BudgetExhausted("rollout refused by the budget", problem_id=ctx.problem.id)
            ends_of = [r[0] for r in rollouts if r]
            for child, end, value in zip(
                steps, ends_of, await self._finished_values(ctx, ends_of), strict=True
            ):
                tree.rollout_of[child.id] = end.id
                tree.finished[end.id] = end
                values[child.id] = value
        else:
            step_values = await path_values(ctx, steps, cfg.scorer, cfg.aggregation)
            values.update(zip([c.id for c in steps], step_values, strict=True))
        return [values[c.id] for c in children]

    async def _finished_values(self, ctx: SearchContext, nodes: list[Node]) -> list[float | None]:
        judge = self.cfg.verifier or self.cfg.scorer
        return await path_values(ctx, nodes, judge, self.cfg.aggregation)

    def _finished_value(self, ctx: SearchContext, node: Node) -> float | None:
        return stored_value(ctx, node, self.cfg.verifier or self.cfg.scorer, self.cfg.aggregation)

    def _final(self, ctx: SearchContext, tree: _Tree) -> Selection:
        rule = self.cfg.final
        finished = sorted(tree.finished.values(), key=lambda n: path_key(n.id))
        if rule == "most_visited":
            node_id = ctx.root.id
            while tree.children.get(node_id):
                kids = tree.children[node_id]
                node_id = min(kids, key=lambda k: (-tree.visits.get(k, 0.0), path_key(k)))
            node_id = tree.rollout_of.get(node_id, node_id)
            node = ctx.graph.node(node_id)
            if node.terminal and node.answer is not None and node_id in tree.finished:
                return Selection(node.answer, node.id, {"visits": tree.visits.get(node_id, 0.0)})
            rule = "best"
        return choose_final(finished, lambda n: self._finished_value(ctx, n), rule)

    def anytime(self, ctx: SearchContext) -> SearchResult:
        rule = "best" if self.cfg.final == "most_visited" else self.cfg.final
        picked = choose_final(ctx.graph.terminals(), lambda n: self._finished_value(ctx, n), rule)
        return SearchResult(picked.answer, picked.node_id, {"anytime": True, **picked.detail})

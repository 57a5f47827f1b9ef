"""Monte Carlo tree search over reasoning steps (UCT or PUCT, PRM values, optional rollouts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy
from branchwise.strategies.selection import Selection
from branchwise.strategies.step_search import (
    choose_final,
    drop_duplicates,
    gather_within_budget,
)
from branchwise.strategies.tree_policy import ChildStats, TreePolicy, select_child, sibling_priors


class MCTSConfig(ScoredConfig):
    name: Literal["mcts"] = "mcts"
    iterations: int = Field(
        32, ge=1, description="Simulations (select, expand, evaluate, back up)."
    )
    expansion_width: int = Field(3, ge=1, description="Next steps sampled when a leaf expands.")
    policy: TreePolicy = Field(
        "uct", description="uct: Q + c*sqrt(ln N/n); puct: Q + c*P*sqrt(N)/(1+n), P from logprobs."
    )
    exploration: float = Field(1.0, ge=0, description="Exploration constant c.")
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
        description="Sibling steps with identical text are one tree node (copies pruned "
        "unvalued); the node may still widen later and draw other steps.",
    )
    progressive_widening: bool = Field(
        True,
        description="Re-expand visited nodes (Coulom 2007; Couëtoux et al. 2011): a node with "
        "that has drawn k steps draws `expansion_width` more while k < widen_c * n^widen_alpha, "
        "n the simulations through it; "
        "false: each node expands once (plain UCT over a fixed sampled width).",
    )
    widen_c: float = Field(1.0, gt=0, description="Progressive widening constant C.")
    widen_alpha: float = Field(
        0.5, gt=0, le=1, description="Progressive widening exponent alpha (0.5 as Couëtoux)."
    )
    widen_patience: int = Field(
        2,
        ge=1,
        description="Expansions of a node in a row that bring no new step (all copies or "
        "failures) before it stops widening; a node that stopped widening whose children "
        "are all finished is exhausted and never selected again.",
    )
    parallel: int = Field(1, ge=1, description="Simulations run concurrently per wave.")
    virtual_loss: float = Field(
        1.0, ge=0, description="Zero-valued visits added to a path while its simulation runs."
    )
    final: Literal["best", "weighted_vote", "vote", "most_visited"] = Field(
        "best",
        description="Answer: best (highest-valued finished path, rollouts included), "
        "weighted_vote / vote over finished paths, or most_visited (follow visits from the root). "
        "With merge_duplicates every finished path is distinct and votes once, so the votes "
        "spread over many wrong answers as the tree grows: best or most_visited suit big trees.",
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
    closed: set[str] = field(default_factory=set)  # nothing left to expand below
    fruitless: dict[str, int] = field(default_factory=dict)  # expansions in a row, no new step
    expansions: dict[str, int] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)  # simulations through each node

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


Outcome = list[tuple[Node, float, float]]  # (node, value, prior) of each new child


class MCTS(Strategy[MCTSConfig]):
    """Monte Carlo tree search over steps (Kocsis & Szepesvári 2006; PUCT as in AlphaZero;
    progressive widening as in Coulom 2007 and Couëtoux et al. 2011; for LLM reasoning e.g.
    ReST-MCTS*, rStar).

    Each simulation selects a path from the root by UCT or PUCT (prior: exp(step logprob)
    normalised among siblings) down to a node to expand: a leaf not expanded yet, or, with
    ``progressive_widening``, a visited node that has drawn k steps while k < ``widen_c`` *
    n^``widen_alpha`` (n: simulations through it), since sampling gives a node only some of its
    next steps (copies of a sibling count as drawn, so a likely step does not make the node
    widen at every pass). The node draws ``expansion_width`` next steps (copies of a sibling
    merged); each new node is valued (the step-level scorer, a ``verifier`` for finished paths,
    or, with ``rollout``, the value of one sampled completion to the end) and the values are
    backed up as a running mean. Finished and depth-capped nodes are closed; so is a node whose
    last ``widen_patience`` expansions brought nothing new and whose children are all closed.
    Closed subtrees are never selected, so every simulation generates; the search ends after
    ``iterations`` simulations, when the budget refuses, or when the root closes (the tree is
    exhausted). ``parallel`` simulations run per wave with virtual loss steering them apart; a
    wave's results are backed up in selection order after it ends, so the tree depends on the
    seed only, never on completion order. Cost per simulation: one request of
    n=``expansion_width`` and as many scorer calls (plus one rollout each with ``rollout``). The
    answer is the best-valued finished path, a vote, or the most visited line of play.
    """

    config_model = MCTSConfig
    description = "MCTS over steps: UCT/PUCT selection, PRM or rollout values, mean backup."

    async def search(self, ctx: SearchPort) -> SearchResult:
        cfg = self.config
        tree = _Tree()
        done, exhausted, tree_exhausted = 0, False, False
        while done < cfg.iterations and not exhausted:
            wave: list[list[str]] = []
            for _ in range(min(cfg.parallel, cfg.iterations - done)):
                path = self._select(tree, ctx)
                if path is None or any(path[-1] == other[-1] for other in wave):
                    tree_exhausted = path is None and not wave
                    break
                for node_id in path:
                    tree.virtual[node_id] = tree.virtual.get(node_id, 0.0) + cfg.virtual_loss
                wave.append(path)
            if not wave:
                break
            outcomes, exhausted = await gather_within_budget(
                [self._simulate(ctx, tree, ctx.node(p[-1])) for p in wave]
            )
            tree.virtual.clear()
            for path, outcome in zip(wave, outcomes, strict=True):
                if outcome is None:
                    continue  # refused by the budget: nothing was generated
                self._grow(ctx, tree, path, outcome)
            done += len(wave)
        picked = self._final(ctx, tree)
        detail = {
            "simulations": done,
            "tree_nodes": len(tree.value),
            "root_visits": tree.visits.get(ctx.root.id, 0.0),
            "root_children": len(tree.children.get(ctx.root.id, [])),
            "tree_exhausted": tree_exhausted,
            "budget_exhausted": exhausted,
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _grow(self, ctx: SearchPort, tree: _Tree, path: list[str], outcome: Outcome) -> None:
        """Add an expansion's valued children, back their values up, update what is closed."""
        leaf = path[-1]
        tree.expansions[leaf] = tree.expansions.get(leaf, 0) + 1
        for node_id in path:
            tree.passes[node_id] = tree.passes.get(node_id, 0) + 1
        tree.fruitless[leaf] = 0 if outcome else tree.fruitless.get(leaf, 0) + 1
        for node, value, prior in outcome:
            tree.children.setdefault(leaf, []).append(node.id)
            tree.value[node.id], tree.prior[node.id] = value, prior
            tree.visits[node.id], tree.value_sum[node.id] = 1.0, value
            if not self._expandable(node):
                tree.closed.add(node.id)
        if outcome:
            tree.backup(path, [value for _, value, _ in outcome])
        for node_id in reversed(path):  # closing a node may close its ancestors
            if not self._is_closed(ctx, tree, node_id):
                break
            tree.closed.add(node_id)

    def _expandable(self, node: Node) -> bool:
        return not node.terminal and node.depth < self.config.max_depth

    def _may_widen(self, tree: _Tree, node_id: str) -> bool:
        """Whether a node may draw more steps now (it has been expanded before)."""
        cfg = self.config
        if not cfg.progressive_widening or tree.fruitless.get(node_id, 0) >= cfg.widen_patience:
            return False
        kids = tree.children.get(node_id, [])
        if all(k in tree.closed for k in kids):
            return True  # nothing open below: widening is the only way on
        # Steps drawn, not distinct children: copies of a likely step count, so a peaked
        # step distribution does not make the node widen at every pass.
        drawn = tree.expansions.get(node_id, 0) * cfg.expansion_width
        passes = max(tree.passes.get(node_id, 0), 1)
        return drawn < cfg.widen_c * math.pow(passes, cfg.widen_alpha)

    def _is_closed(self, ctx: SearchPort, tree: _Tree, node_id: str) -> bool:
        if node_id in tree.closed or not self._expandable(ctx.node(node_id)):
            return True
        if tree.expansions.get(node_id, 0) == 0:
            return False  # a leaf not expanded yet
        kids = tree.children.get(node_id, [])
        stalled = not self.config.progressive_widening or (
            tree.fruitless.get(node_id, 0) >= self.config.widen_patience
        )
        return stalled and all(k in tree.closed for k in kids)

    def _select(self, tree: _Tree, ctx: SearchPort) -> list[str] | None:
        """The path to the node to expand: an unexpanded leaf, or a node due for widening.

        Closed subtrees (finished, depth-capped or drawn dry) are never entered, so a
        simulation always generates; None when the whole tree is closed.
        """
        root = ctx.root.id
        if root in tree.closed:
            return None
        path = [root]
        while True:
            node_id = path[-1]
            if tree.expansions.get(node_id, 0) == 0 or self._may_widen(tree, node_id):
                return path
            kids = [k for k in tree.children.get(node_id, []) if k not in tree.closed]
            if not kids:
                return None  # unreachable while closure is kept up to date
            stats = [tree.stats(k) for k in kids]
            parent = tree.stats(node_id).visits
            path.append(select_child(stats, parent, self.config.exploration, self.config.policy))

    async def _simulate(self, ctx: SearchPort, tree: _Tree, leaf: Node) -> Outcome:
        cfg = self.config
        logprobs = 0 if cfg.policy == "puct" else None
        children = await ctx.expand(
            leaf, cfg.expansion_width, max_tokens=cfg.step_max_tokens, logprobs=logprobs
        )
        if cfg.merge_duplicates:
            known = [ctx.node(c) for c in tree.children.get(leaf.id, [])]
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
        self, ctx: SearchPort, tree: _Tree, children: list[Node]
    ) -> list[float | None]:
        cfg = self.config
        ends = [c for c in children if c.terminal]
        steps = [c for c in children if not c.terminal]
        values: dict[str, float | None] = dict(
            zip([c.id for c in ends], await self._finished_values(ctx, ends), strict=True)
        )
        if cfg.rollout:
            rollouts, exhausted = await gather_within_budget(
                [ctx.expand(c, 1, one_step=False, max_tokens=cfg.rollout_max_tokens) for c in steps]
            )
            if exhausted:
                raise BudgetExhausted("rollout refused by the budget", problem_id=ctx.problem_id)
            ends_of = [r[0] for r in rollouts if r]
            for child, end, value in zip(
                steps, ends_of, await self._finished_values(ctx, ends_of), strict=True
            ):
                tree.rollout_of[child.id] = end.id
                tree.finished[end.id] = end
                values[child.id] = value
        else:
            step_values = await ctx.values(steps, cfg.scorer)
            values.update(zip([c.id for c in steps], step_values, strict=True))
        return [values[c.id] for c in children]

    async def _finished_values(self, ctx: SearchPort, nodes: list[Node]) -> list[float | None]:
        judge = self.config.verifier or self.config.scorer
        return await ctx.values(nodes, judge)

    def _finished_value(self, ctx: TreeView, node: Node) -> float | None:
        return ctx.value(node, self.config.verifier or self.config.scorer)

    def _final(self, ctx: SearchPort, tree: _Tree) -> Selection:
        rule = self.config.final
        finished = sorted(tree.finished.values(), key=lambda n: path_key(n.id))
        if rule == "most_visited":
            node_id = ctx.root.id
            while tree.children.get(node_id):
                kids = tree.children[node_id]
                node_id = min(kids, key=lambda k: (-tree.visits.get(k, 0.0), path_key(k)))
            node_id = tree.rollout_of.get(node_id, node_id)
            node = ctx.node(node_id)
            if node.terminal and node.answer is not None and node_id in tree.finished:
                return Selection(node.answer, node.id, {"visits": tree.visits.get(node_id, 0.0)})
            rule = "best"
        return choose_final(finished, lambda n: self._finished_value(ctx, n), rule)

    def select(self, tree: TreeView) -> SearchResult:
        """Among every finished path the tree holds (``most_visited`` needs the search's own
        statistics, so it reads as ``best`` here)."""
        rule = "best" if self.config.final == "most_visited" else self.config.final
        picked = choose_final(tree.terminals(), lambda n: self._finished_value(tree, n), rule)
        return SearchResult(picked.answer, picked.node_id, dict(picked.detail))

"""The Branchwise side of the AB-MCTS equivalence tests: the strategies' own policies (the
decisions AB-MCTS makes on the way down, and what it learns from each score) grow a
synthetic tree exactly as ``ABMCTS.search`` walks one, without an engine."""

from __future__ import annotations

import random

from branchwise.strategies.ab_mcts import BranchPolicy
from tests.equivalence.synthetic_trees import Path, Shape, score, tree_summary


def grow(policy: BranchPolicy, shape: Shape, seed: int, iterations: int) -> dict[str, float]:
    """``iterations`` new nodes, each where the policy's descent from the root stops."""
    rng = random.Random(seed)
    root = "r"
    paths: dict[str, Path] = {root: ()}
    children: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    parents: list[int] = []
    scores: list[float] = []
    for _ in range(iterations):
        trail = [root]
        while (choice := policy.choose(trail[-1], children.get(trail[-1], []), rng)) is not None:
            trail.append(choice)
        node = trail[-1]
        index = len(children.get(node, []))
        child = f"{node}.{index}"
        paths[child] = (*paths[node], index)
        children.setdefault(node, []).append(child)
        value = score(shape, seed, paths[child])
        policy.record(trail, child, value)
        order[child] = len(parents)
        parents.append(order.get(node, -1))
        scores.append(value)
    return tree_summary(parents, scores)

"""Pure selection rules over finished nodes: votes and argmax, with fixed tie-breaking.

Ties are broken by the earliest node id in path order, never by completion order, so the
same graph always selects the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from branchwise.core.graph import Node, path_key


@dataclass(frozen=True)
class Selection:
    answer: str | None
    node_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def weighted_vote(nodes: Sequence[Node], weight: Callable[[Node], float]) -> Selection:
    """The answer with the largest total weight; its first node represents it."""
    totals: dict[str, float] = {}
    first: dict[str, Node] = {}
    for node in _in_path_order(nodes):
        if node.answer is None:
            continue
        totals[node.answer] = totals.get(node.answer, 0.0) + weight(node)
        first.setdefault(node.answer, node)
    if not totals:
        return Selection(None, None, {"votes": {}})
    order = {answer: i for i, answer in enumerate(first)}
    best = max(totals, key=lambda a: (totals[a], -order[a]))
    rounded = {a: round(v, 6) for a, v in totals.items()}
    if totals[best] <= 0:
        # every weight failed or was zero: say so rather than crown the first sample
        return Selection(None, None, {"votes": rounded, "no_positive_weight": True})
    return Selection(best, first[best].id, {"votes": rounded})


def majority_vote(nodes: Sequence[Node]) -> Selection:
    """Plain self-consistency: one vote per node with an answer."""
    return weighted_vote(nodes, lambda _node: 1.0)


def argmax(nodes: Sequence[Node], value: Callable[[Node], float | None]) -> Selection:
    """The node with the highest value (None values never win)."""
    best: Node | None = None
    best_value = float("-inf")
    for node in _in_path_order(nodes):
        v = value(node)
        if v is not None and v > best_value:
            best, best_value = node, v
    if best is None:
        return Selection(None, None, {})
    return Selection(best.answer, best.id, {"value": best_value})


def _in_path_order(nodes: Sequence[Node]) -> list[Node]:
    """Canonical order (r.2 before r.10), whatever order the caller collected nodes in."""
    return sorted(nodes, key=lambda n: path_key(n.id))

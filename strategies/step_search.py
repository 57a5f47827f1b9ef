"""Shared pieces of the step-level strategies: budget-aware gathers, final picks, ranking.

A step-level strategy values partial paths through the port (``port.values``: one rule for
every strategy). A node whose score failed gets the explicit ``failed`` status and no value:
it is left out of every ranking instead of being given a plausible number.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, path_key
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.selection import Selection, argmax, majority_vote, weighted_vote

T = TypeVar("T")

FinalRule = Literal["best", "weighted_vote", "vote"]
"""best: the finished node with the highest value; weighted_vote: answers weighted by value;
vote: one vote per finished node."""


async def gather_within_budget(aws: Sequence[Awaitable[T]]) -> tuple[list[T | None], bool]:
    """Run ``aws`` concurrently; a budget refusal gives None in its place.

    Returns the results in input order and whether any part hit the budget. Any other error
    is raised, but only after every part has finished, so nothing is left running.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    out: list[T | None] = []
    exhausted = False
    for result in results:
        if isinstance(result, BudgetExhausted):
            out.append(None)
            exhausted = True
        elif isinstance(result, BaseException):
            raise result
        else:
            out.append(result)
    return out, exhausted


def select_by_values(tree: TreeView, scorer: str, rule: FinalRule) -> Selection:
    """The answer among the tree's finished nodes by their stored values under ``scorer``."""
    return choose_final(tree.terminals(), lambda n: tree.value(n, scorer), rule)


def choose_final(
    nodes: Sequence[Node], value: Callable[[Node], float | None], rule: FinalRule
) -> Selection:
    """The answer among finished ``nodes`` (ordered canonically) by ``rule``.

    Nodes without an answer or without a value never take part; negative values add no weight.
    """
    ordered = sorted((n for n in nodes if n.answer is not None), key=lambda n: path_key(n.id))
    valued = [n for n in ordered if value(n) is not None]
    if rule == "best":
        return argmax(valued, value)
    if rule == "vote":
        return majority_vote(valued)
    return weighted_vote(valued, lambda n: max(value(n) or 0.0, 0.0))


def drop_duplicates(
    ctx: SearchPort, siblings: Sequence[Node], seen: Sequence[Node] = ()
) -> list[Node]:
    """Siblings with the same text are the same state: keep the earliest, prune the others.

    ``seen`` are siblings already kept earlier. Since siblings share their prefix, merging
    them at every expansion keeps every path in the search distinct.
    """
    texts = {n.text for n in seen}
    kept: list[Node] = []
    copies: list[Node] = []
    for node in sorted(siblings, key=lambda n: path_key(n.id)):
        (copies if node.text in texts else kept).append(node)
        texts.add(node.text)
    ctx.prune(copies)
    return kept


def ranked(nodes: Sequence[Node], value: Callable[[Node], float | None]) -> list[Node]:
    """Nodes by value, best first; ties go to the earlier id; valueless nodes last."""

    def key(node: Node) -> tuple[int, float, tuple[int, ...]]:
        v = value(node)
        return (0 if v is not None else 1, -(v or 0.0), path_key(node.id))

    return sorted(nodes, key=key)

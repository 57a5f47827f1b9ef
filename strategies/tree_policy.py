"""Pure tree-policy rules for MCTS: UCT, PUCT, sibling priors and child selection.

Kept apart from the search so each formula can be tested on numbers alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from branchwise.core.graph import path_key
from branchwise.strategies.resampling import softmax

TreePolicy = Literal["uct", "puct"]


@dataclass(frozen=True)
class ChildStats:
    """What selection sees of a child: its visits (virtual ones included), value sum, prior."""

    node_id: str
    visits: float
    value_sum: float
    prior: float = 1.0

    @property
    def mean_value(self) -> float:
        return self.value_sum / self.visits if self.visits > 0 else 0.0


def uct_score(child: ChildStats, parent_visits: float, exploration: float) -> float:
    """UCT (Kocsis & Szepesvári 2006): Q + c * sqrt(ln N_parent / N_child); unvisited = +inf."""
    if child.visits <= 0:
        return math.inf
    bonus = math.sqrt(math.log(max(parent_visits, 1.0)) / child.visits)
    return child.mean_value + exploration * bonus


def puct_score(child: ChildStats, parent_visits: float, exploration: float) -> float:
    """PUCT (AlphaZero): Q + c * P * sqrt(N_parent) / (1 + N_child)."""
    bonus = child.prior * math.sqrt(max(parent_visits, 0.0)) / (1.0 + child.visits)
    return child.mean_value + exploration * bonus


def select_child(
    children: Sequence[ChildStats], parent_visits: float, exploration: float, rule: TreePolicy
) -> str:
    """The id of the child the rule scores highest; ties go to the earlier node id."""
    if not children:
        raise ValueError("select_child needs at least one child")
    formula = uct_score if rule == "uct" else puct_score
    best = min(
        children,
        key=lambda c: (-formula(c, parent_visits, exploration), path_key(c.node_id)),
    )
    return best.node_id


def sibling_priors(segment_logprobs: Sequence[float | None]) -> list[float]:
    """Priors among siblings: exp(segment logprob) normalised over them.

    A sibling without a finite logprob (None: not requested) makes the priors uniform, since
    a partial prior would favour whoever happened to report one.
    """
    if not segment_logprobs:
        return []
    if any(lp is None or not math.isfinite(lp) for lp in segment_logprobs):
        return [1.0 / len(segment_logprobs)] * len(segment_logprobs)
    return softmax([float(lp) for lp in segment_logprobs if lp is not None])

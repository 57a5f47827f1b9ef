"""A search graph read through the port's tree view: what strategies and ``select`` read.

One implementation serves a running search (the search context is a view of its own graph
plus the effects) and a stored one: the metrics ask a strategy which answer it would pick
from the first N samples of a run, and this view shows it exactly those samples (and what
grew below them), with values by the same score -> value rule the search used, so the pick is
the strategy's own, never a copy.
"""

from __future__ import annotations

from collections.abc import Sequence

from branchwise.core.graph import ROOT_ID, Node, NodeStatus, Score, SearchGraph
from branchwise.core.values import Aggregation, score_value


class GraphView:
    """A read-only :class:`~branchwise.core.port.TreeView` of a search graph.

    ``samples``: the root's children to show (default all); nodes below other root children
    are hidden from every read.
    """

    def __init__(
        self,
        graph: SearchGraph,
        *,
        aggregation: Aggregation | None = None,
        samples: Sequence[Node] | None = None,
    ) -> None:
        self.graph = graph
        self.aggregation = aggregation
        self._shown = None if samples is None else {n.id for n in samples}

    def _visible(self, node_id: str) -> bool:
        if self._shown is None or node_id == ROOT_ID:
            return True
        first = ".".join(node_id.split(".")[:2])  # the root child this node grew from
        return first in self._shown

    @property
    def problem_id(self) -> str:
        return self.graph.problem_id

    @property
    def root(self) -> Node:
        return self.graph.root

    def node(self, node_id: str) -> Node:
        return self.graph.node(node_id)

    def children(self, node: Node) -> list[Node]:
        return [c for c in self.graph.children(node.id) if self._visible(c.id)]

    def path(self, node: Node) -> list[Node]:
        return self.graph.path(node.id)

    def terminals(self) -> list[Node]:
        return [n for n in self.graph.terminals() if self._visible(n.id)]

    def status(self, node: Node) -> NodeStatus:
        return self.graph.state(node.id).status

    def score_of(self, node: Node, scorer: str) -> Score | None:
        return self.graph.score(node.id, scorer)

    def value(self, node: Node, scorer: str) -> float | None:
        score = self.graph.score(node.id, scorer)
        return None if score is None else score_value(score, self.aggregation)

    def solution(self, node: Node) -> str:
        return self.graph.solution_text(node.id)

    def written_tokens(self, node: Node) -> int:
        return len(self.graph.full_token_ids(node.id)) - len(self.graph.root.token_ids)

    def __len__(self) -> int:
        return sum(1 for n in self.graph.nodes() if self._visible(n.id))

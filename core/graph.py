"""The search graph: one networkx DiGraph per search, the single source of truth.

Each node's payload is a frozen :class:`Node`; what changes during a search (scores, pruning,
failure) lives in the graph's per-node attributes, never in the payload.
Node ids are paths (``"r"``, ``"r.0"``, ``"r.0.3"``), scoped to one search, so a node's id
names the same node in every run with the same seed, and doubles as its engine request id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx

from branchwise.core.errors import BranchwiseError

NodeStatus = Literal["open", "terminal", "pruned", "failed", "aborted"]
ROOT_ID = "r"


@dataclass(frozen=True)
class Score:
    """One scorer's verdict on one node; ``error`` set means the scorer failed on it."""

    value: float | None
    step_values: tuple[float, ...] = ()
    error: str | None = None
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None


@dataclass(frozen=True)
class Node:
    """A partial (or finished) solution: its own segment plus a link to its parent."""

    id: str
    parent_id: str | None
    depth: int
    token_ids: tuple[int, ...]
    text: str
    token_logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[tuple[float, ...], ...] = ()
    cum_logprob: float = 0.0
    finish_reason: str | None = None
    terminal: bool = False
    answer: str | None = None
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    forced: bool = False
    """Tokens placed by the strategy (``ctx.extend``), not sampled: they cost no generated
    tokens, so token accounting skips them."""
    thinking_tokens: int = 0
    """Tokens of this segment inside a reasoning model's thinking (its end tag included)."""
    thinking_open: bool = False
    """True while the path is still thinking after this node (no end tag yet); the root is
    open when the recipe has a reasoning format."""
    prompt_variant: str | None = None
    """The label of the prompt variant this whole solution was sampled under
    (``port.sample_variant``); None: the problem's own prompt, the root's ids."""

    @property
    def generated_tokens(self) -> int:
        """Tokens the engine sampled for this node (0 for forced nodes)."""
        return 0 if self.forced else len(self.token_ids)

    @property
    def segment_logprob(self) -> float:
        return float(sum(self.token_logprobs))


@dataclass
class NodeState:
    """Mutable per-node bookkeeping kept beside the frozen payload."""

    status: NodeStatus = "open"
    scores: dict[str, Score] = field(default_factory=dict)
    error: str | None = None
    next_child: int = 0


class SearchGraph:
    """A DiGraph of nodes for one problem; every node ever created stays (the trace)."""

    def __init__(
        self,
        problem_id: str,
        prompt_token_ids: tuple[int, ...],
        prompt: str,
        *,
        thinking_open: bool = False,
    ) -> None:
        """``thinking_open``: paths start inside a reasoning model's thinking."""
        self.problem_id = problem_id
        self.graph: nx.DiGraph = nx.DiGraph()
        root = Node(
            id=ROOT_ID,
            parent_id=None,
            depth=0,
            token_ids=prompt_token_ids,
            text=prompt,
            thinking_open=thinking_open,
        )
        self._add(root)

    def _add(self, node: Node) -> None:
        self.graph.add_node(node.id, node=node, state=NodeState())
        if node.parent_id is not None:
            self.graph.add_edge(node.parent_id, node.id)

    @property
    def root(self) -> Node:
        return self.node(ROOT_ID)

    def node(self, node_id: str) -> Node:
        try:
            payload: Node = self.graph.nodes[node_id]["node"]
        except KeyError:
            raise BranchwiseError(
                f"no node {node_id!r} in this search", problem_id=self.problem_id
            ) from None
        return payload

    def state(self, node_id: str) -> NodeState:
        state: NodeState = self.graph.nodes[node_id]["state"]
        return state

    def reserve_child_ids(self, parent_id: str, count: int) -> list[str]:
        """Allocate ``count`` child ids under a parent in a fixed order."""
        state = self.state(parent_id)
        start = state.next_child
        state.next_child += count
        return [f"{parent_id}.{i}" for i in range(start, start + count)]

    def add_child(self, node: Node) -> Node:
        if node.parent_id is None or node.parent_id not in self.graph:
            raise BranchwiseError(
                f"parent {node.parent_id!r} missing", problem_id=self.problem_id, node_id=node.id
            )
        self._add(node)
        if node.terminal:
            self.state(node.id).status = "terminal"
        return node

    def children(self, node_id: str) -> list[Node]:
        return [self.node(c) for c in sorted(self.graph.successors(node_id), key=path_key)]

    def path(self, node_id: str) -> list[Node]:
        """Nodes from the root to ``node_id`` inclusive."""
        nodes: list[Node] = []
        current: str | None = node_id
        while current is not None:
            node = self.node(current)
            nodes.append(node)
            current = node.parent_id
        return nodes[::-1]

    def full_token_ids(self, node_id: str) -> tuple[int, ...]:
        """Prompt tokens plus every segment on the path: the exact prompt of a child."""
        ids: list[int] = []
        for node in self.path(node_id):
            ids.extend(node.token_ids)
        return tuple(ids)

    def solution_text(self, node_id: str) -> str:
        """The generated text on the path, without the prompt."""
        return "".join(n.text for n in self.path(node_id)[1:])

    def steps(self, node_id: str) -> list[str]:
        """The segment texts on the path, one per step, without the prompt."""
        return [n.text for n in self.path(node_id)[1:]]

    def nodes(self) -> Iterator[Node]:
        for node_id in sorted(self.graph.nodes, key=path_key):
            yield self.node(node_id)

    def terminals(self, *, include_pruned: bool = False) -> list[Node]:
        out = []
        for node in self.nodes():
            status = self.state(node.id).status
            if node.terminal and (include_pruned or status == "terminal"):
                out.append(node)
        return out

    def mark(self, node_id: str, status: NodeStatus, error: str | None = None) -> None:
        state = self.state(node_id)
        state.status = status
        if error is not None:
            state.error = error

    def set_score(self, node_id: str, scorer: str, score: Score) -> None:
        self.state(node_id).scores[scorer] = score

    def score(self, node_id: str, scorer: str) -> Score | None:
        return self.state(node_id).scores.get(scorer)

    def is_acyclic(self) -> bool:
        return bool(nx.is_directed_acyclic_graph(self.graph))

    def __len__(self) -> int:
        return int(self.graph.number_of_nodes())

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready trace of the whole search (pruned and failed nodes included)."""
        nodes = []
        for node in self.nodes():
            state = self.state(node.id)
            nodes.append(
                {
                    "id": node.id,
                    "parent": node.parent_id,
                    "depth": node.depth,
                    "text": node.text,
                    "tokens": len(node.token_ids),
                    "cum_logprob": round(node.cum_logprob, 6),
                    "finish_reason": node.finish_reason,
                    "terminal": node.terminal,
                    "forced": node.forced,
                    "thinking_tokens": node.thinking_tokens,
                    "thinking_open": node.thinking_open,
                    "answer": node.answer,
                    "status": state.status,
                    "error": state.error,
                    "scores": {
                        name: {"value": s.value, "steps": list(s.step_values), "error": s.error}
                        for name, s in sorted(state.scores.items())
                    },
                    **({"prompt_variant": node.prompt_variant} if node.prompt_variant else {}),
                }
            )
        return {"problem_id": self.problem_id, "nodes": nodes}


def path_key(node_id: str) -> tuple[int, ...]:
    """The canonical order of node ids, numerically by path: r.2 < r.10 < r.10.0."""
    return tuple(int(part) for part in node_id.split(".")[1:])

"""One problem's search graph as a self-contained HTML page, or as JSON, GraphML or DOT.

The page lays the tree out here (leaves side by side in path order, a parent centred over its
children, one row per depth) and draws it in the browser as SVG with pan and zoom; a click on
a node shows its text, tokens, status and scores. Nodes are coloured by the first scorer's
value (red low, green high; grey unscored), pruned nodes are hollow, and the chosen path is
drawn thick. Nothing is fetched: the data and the script are in the page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jinja2
import networkx as nx

from branchwise.core.graph import path_key

TraceFormat = Literal["html", "json", "graphml", "dot"]
X_STEP, Y_STEP = 16.0, 70.0
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("branchwise.orchestrator", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
)


def layout(nodes: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """x, y per node id: a tidy tree, leaves in path order, parents over their children."""
    children: dict[str, list[str]] = {}
    for node in nodes:
        if node["parent"] is not None:
            children.setdefault(node["parent"], []).append(node["id"])
    for kids in children.values():
        kids.sort(key=path_key)
    depth = {n["id"]: int(n["depth"]) for n in nodes}
    places: dict[str, tuple[float, float]] = {}
    next_leaf = 0.0
    roots = sorted((n["id"] for n in nodes if n["parent"] is None), key=path_key)
    for root in roots:  # iterative post-order: deep graphs must not hit the recursion limit
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            node_id, expanded = stack.pop()
            kids = children.get(node_id, [])
            if not kids:
                places[node_id] = (next_leaf * X_STEP, depth[node_id] * Y_STEP)
                next_leaf += 1
            elif expanded:
                xs = [places[k][0] for k in kids]
                places[node_id] = ((xs[0] + xs[-1]) / 2, depth[node_id] * Y_STEP)
            else:
                stack.append((node_id, True))
                stack.extend((k, False) for k in reversed(kids))
    return places


def chosen_path(nodes: list[dict[str, Any]], node_id: str | None) -> list[str]:
    parents = {n["id"]: n["parent"] for n in nodes}
    path: list[str] = []
    current = node_id
    while current is not None and current in parents:
        path.append(current)
        current = parents[current]
    return path[::-1]


def trace_html(graph: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    nodes: list[dict[str, Any]] = list(graph["nodes"])
    places = layout(nodes)
    scorers = sorted({name for n in nodes for name in n.get("scores", {})})
    payload = {
        "problem": record.get("problem_id", graph.get("problem_id")),
        "question": record.get("question"),
        "answer": record.get("answer"),
        "reference": record.get("reference"),
        "correct": record.get("correct"),
        "chosen": chosen_path(nodes, record.get("node_id")),
        "scorers": scorers,
        "nodes": [
            {**n, "x": places[n["id"]][0], "y": places[n["id"]][1]}
            for n in nodes
            if n["id"] in places
        ],
    }
    data = json.dumps(payload).replace("</", "<\\/")
    return _TEMPLATES.get_template("trace.html.j2").render(
        data=data, title=f"trace {payload['problem']}", payload=payload
    )


def to_networkx(graph: Mapping[str, Any]) -> nx.DiGraph:
    """The graph with scalar attributes only (GraphML and DOT hold no nested values)."""
    out = nx.DiGraph(problem_id=str(graph.get("problem_id", "")))
    for node in graph["nodes"]:
        attrs: dict[str, Any] = {
            key: value
            for key, value in node.items()
            if key not in ("scores", "parent", "id") and value is not None
        }
        for name, score in (node.get("scores") or {}).items():
            if score.get("value") is not None:
                attrs[f"score_{name}"] = float(score["value"])
            if score.get("error"):
                attrs[f"score_{name}_error"] = str(score["error"])
        out.add_node(node["id"], **attrs)
        if node["parent"] is not None:
            out.add_edge(node["parent"], node["id"])
    return out


def trace_dot(graph: Mapping[str, Any], chosen: list[str]) -> str:
    """Graphviz source: a box per node (id, status, answer, scores), the chosen path thick."""

    def quote(text: object) -> str:
        # one escaping pass: a line break in a label becomes DOT's \n, nothing else doubles
        escaped = str(text).replace("\\", "\\\\").replace('"', '\\"')
        return '"' + escaped.replace("\n", "\\n") + '"'

    on_path = set(chosen)
    lines = [f"digraph {quote(graph.get('problem_id', 'search'))} {{", "  node [shape=box];"]
    for node in graph["nodes"]:
        label = [f"{node['id']} [{node['status']}]"]
        if node.get("answer") is not None:
            label.append(f"answer {node['answer']}")
        for name, score in (node.get("scores") or {}).items():
            if score.get("value") is not None:
                label.append(f"{name} {score['value']:.3g}")
        style = ["penwidth=3"] if node["id"] in on_path else []
        if node["status"] == "pruned":
            style.append("style=dashed")
        attrs = ", ".join([f"label={quote(chr(10).join(label))}", *style])
        lines.append(f"  {quote(node['id'])} [{attrs}];")
        if node["parent"] is not None:
            lines.append(f"  {quote(node['parent'])} -> {quote(node['id'])};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_trace(
    graph: Mapping[str, Any], record: Mapping[str, Any], out: Path, *, format: TraceFormat
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "html":
        out.write_text(trace_html(graph, record), encoding="utf-8")
    elif format == "json":
        out.write_text(json.dumps(graph, indent=1), encoding="utf-8")
    elif format == "graphml":
        nx.write_graphml(to_networkx(graph), out)
    else:
        chosen = chosen_path(list(graph["nodes"]), record.get("node_id"))
        out.write_text(trace_dot(graph, chosen), encoding="utf-8")

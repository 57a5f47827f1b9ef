"""The import graph has no circles, and strategies see only the port.

Every ``import`` of a project module counts, wherever it sits: at the top of a module, inside
a function (a lazy import), or under ``TYPE_CHECKING`` (a type-only import still ties two
modules' ideas together). A package importing its own submodules through the parent package
(``branchwise/__init__``'s lazy exports) is the one thing not counted as an edge back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("core", "orchestrator", "strategies", "verifiers", "rewards")


def _modules() -> dict[str, Path]:
    found = {"branchwise": REPO / "branchwise" / "__init__.py"}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(("branchwise", *(parts[:-1] if parts[-1] == "__init__" else parts)))
            found[name] = path
    return found


def import_graph() -> nx.DiGraph:
    """Module -> each project module it imports (submodules resolved)."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name and not name.startswith("branchwise."):
                    continue  # the top-level package's lazy exports point down, never back
                if target in modules and target != name:
                    graph.add_edge(name, target)
    return graph


def test_there_are_no_import_circles() -> None:
    graph = import_graph()
    assert graph.number_of_nodes() > 100 and graph.number_of_edges() > 300
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_strategies_import_nothing_from_the_orchestrator_not_even_for_typing() -> None:
    graph = import_graph()
    reaching_up = sorted(
        f"{source} -> {target}"
        for source, target in graph.edges
        if source.startswith("branchwise.strategies")
        and target.startswith("branchwise.orchestrator")
    )
    assert not reaching_up, reaching_up


def test_the_check_finds_a_planted_circle(tmp_path: Path) -> None:
    graph = import_graph()
    graph.add_edge("branchwise.core.graph", "branchwise.strategies.base")  # planted
    assert list(nx.simple_cycles(graph))

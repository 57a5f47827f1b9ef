"""The report and trace pages, opened in headless Chromium: what renders, and a screenshot."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from branchwise.orchestrator.cli import main
from branchwise.orchestrator.trace import layout, write_trace
from tests.browser import ink, rendered_dom, screenshot
from tests.unit.test_cli_and_store import _dataset, _recipe

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    recipe = _recipe(tmp, _dataset(tmp, 6))
    a, b = tmp / "sc4", tmp / "sc1"
    assert main(["eval", str(recipe), "--out", str(a), "--traces", "--quiet"]) == 0
    assert main(["eval", str(recipe), "--out", str(b), "--set", "strategy.n=1", "--quiet"]) == 0
    return a, b


def test_report_renders_plot_tables_and_trace_links(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    page = tmp_path / "out" / "report.html"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(page)]) == 0
    html = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)  # self-contained: nothing fetched
    markdown = page.with_suffix(".md").read_text().splitlines()
    assert sum(line.startswith("| sc") for line in markdown) == 2  # one row per run
    dom = rendered_dom(page.as_uri(), tmp_path)
    assert len(re.findall(r'class="run-point"', dom)) == 2
    assert dom.count("<tr>") >= 3 and "95% CI" in dom
    links = re.findall(r'href="(report_traces/[^"]+)"', dom)
    assert links and all((page.parent / link).is_file() for link in links)
    shot = screenshot(page.as_uri(), tmp_path)
    share, colours = ink(shot)
    assert share > 0.03 and colours > 20, (share, colours)


def _big_graph(count: int) -> dict[str, object]:
    """A beam-like tree of ``count`` nodes: 8 children per node, breadth first."""
    nodes = [{"id": "r", "parent": None, "depth": 0}]
    frontier, index = ["r"], 0
    while len(nodes) < count:
        parent = frontier[index]
        index += 1
        for k in range(8):
            if len(nodes) >= count:
                break
            depth = parent.count(".") + 1
            node_id = f"{parent}.{k}"
            nodes.append({"id": node_id, "parent": parent, "depth": depth})
            frontier.append(node_id)
    full = []
    for i, n in enumerate(nodes):
        leaf = not any(m["parent"] == n["id"] for m in nodes[i + 1 : i + 9])
        full.append(
            {
                **n,
                "text": f"step text of {n['id']} <b>&</b>",
                "tokens": 12,
                "cum_logprob": -1.0,
                "finish_reason": "stop" if leaf else "length",
                "terminal": leaf,
                "forced": False,
                "answer": "42" if leaf else None,
                "status": "pruned" if i % 5 == 0 and i else ("terminal" if leaf else "open"),
                "error": None,
                "scores": {"prm": {"value": (i % 10) / 10, "steps": [], "error": None}},
            }
        )
    return {"problem_id": "big", "nodes": full}


def test_trace_of_a_2000_node_graph_renders_and_shows_a_node_on_click(tmp_path: Path) -> None:
    graph = _big_graph(2000)
    record = {"problem_id": "big", "answer": "42", "reference": "42", "correct": True,
              "node_id": "r.7.7.7"}  # fmt: skip
    page = tmp_path / "trace.html"
    write_trace(graph, record, page, format="html")
    dom = rendered_dom(page.as_uri() + "#node=r.7.7.7", tmp_path)
    assert 'data-rendered="2000"' in dom
    assert dom.count("<circle") == 2000
    assert dom.count('class="edge chosen"') == 3  # r -> r.7 -> r.7.7 -> r.7.7.7
    assert "node r.7.7.7" in dom and "step text of r.7.7.7 &lt;b&gt;" in dom  # escaped
    whole = re.search(r'<pre id="path-text">(.*?)</pre>', dom, re.S)
    assert whole is not None and "step text of r.7.7" in whole.group(1)  # the path, not the node
    assert 'id="scale-lo">0.00<' in dom and 'id="scale-hi">1.00<' in dom
    share, colours = ink(screenshot(page.as_uri(), tmp_path))
    assert share > 0.02 and colours > 10, (share, colours)


def test_trace_exports_json_graphml_and_dot(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base = ["trace", str(runs[0]), "--problem", "p0"]
    for fmt in ("json", "graphml", "dot", "html"):
        assert main([*base, "--format", fmt, "--out", str(tmp_path / f"t.{fmt}")]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    root = ET.parse(tmp_path / "t.graphml").getroot()
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == len(data["nodes"])
    assert len(root.findall(".//g:edge", ns)) == len(data["nodes"]) - 1
    dot = (tmp_path / "t.dot").read_text()
    assert dot.startswith('digraph "p0"') and dot.count("->") == len(data["nodes"]) - 1
    assert main(["trace", str(runs[1]), "--problem", "p0"]) == 2  # no graph stored


def test_layout_puts_parents_over_their_children() -> None:
    graph = _big_graph(50)
    places = layout(graph["nodes"])  # type: ignore[arg-type]
    assert places["r"][0] == (places["r.0"][0] + places["r.7"][0]) / 2
    assert len({places[n["id"]] for n in graph["nodes"]}) == 50  # type: ignore[union-attr]

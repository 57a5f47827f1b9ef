"""Report and trace pages say things in words: no Python None, runs named by their path, round
axis ticks, markdown that is markdown, a trace page with the question, whole path text and a
colour scale, and DOT that Graphviz renders as written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from branchwise.orchestrator.cli import main
from branchwise.orchestrator.report_html import nice_ticks, outcome_text, run_names
from branchwise.orchestrator.store import ResultStore
from branchwise.orchestrator.trace import trace_dot, trace_html
from tests.conftest import REPO

SOLUTIONS = REPO / "examples/testbed/data/eval.jsonl"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sweeps whose budget folders share names, with traces (scripted engine)."""
    tmp = tmp_path_factory.mktemp("sweeps")
    recipe = tmp / "sc.yaml"
    recipe.write_text(
        f"engine: {{kind: scripted, error_rate: 0.5, solutions: {SOLUTIONS}}}\n"
        "strategy: {name: self_consistency, n: 4}\nsampling: {max_tokens: 200}\n"
        'step_delimiter: "\\n\\n"\nanswer: {method: boxed}\n'
        f"dataset: {{path: {SOLUTIONS}, limit: 6}}\n"
    )
    for name, seed in (("sweep-a", "0"), ("sweep-b", "3")):
        argv = ["eval", str(recipe), "--out", str(tmp / name), "--budgets", "256,512"]
        assert main([*argv, "--traces", "--quiet", "--seed", seed]) in (0, 1)
    return tmp


def test_runs_are_named_by_their_path_so_sweeps_never_collide(tmp_path: Path) -> None:
    folders = [tmp_path / "a/sweep/budget-256", tmp_path / "b/sweep/budget-256"]
    assert run_names(folders) == ["a/sweep/budget-256", "b/sweep/budget-256"]
    assert run_names([tmp_path / "x/demo"]) == ["demo"]
    assert run_names([tmp_path / "r", tmp_path / "r/inner"]) == ["r", "r/inner"]


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (579.0, [0, 200, 400, 600]),
        (1.0, [0, 0.25, 0.5, 0.75, 1.0]),
        (4096.0, [0, 2000, 4000, 6000]),
        (230.0, [0, 100, 200, 300]),
    ],
)
def test_axis_ticks_are_round_numbers(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_outcomes_are_words_never_none() -> None:
    assert outcome_text({"answer": None, "reference": "181", "correct": False}) == (
        "wrong: no answer (ref 181)"
    )
    assert outcome_text({"answer": "7", "reference": None, "correct": None}) == "7 (ungraded)"
    assert outcome_text({"answer": "7", "reference": "7", "correct": True}) == "right: 7 (ref 7)"
    assert outcome_text(None) == "-"


def test_report_pages_have_no_none_path_names_and_clean_markdown(sweeps: Path) -> None:
    out = sweeps / "report.html"
    assert (
        main(["report", str(sweeps / "sweep-a"), str(sweeps / "sweep-b"), "--out", str(out)]) == 0
    )
    html, md = out.read_text(), out.with_suffix(".md").read_text()
    for page in (html, md):
        assert not re.search(r"\bNone\b", page)
        for name in ("sweep-a/budget-256", "sweep-b/budget-256", "sweep-a/budget-512"):
            assert name in page
    for line in md.splitlines():
        assert not line.rstrip().endswith(";"), line
        if line.startswith("|"):
            assert line.endswith("|"), line
    tables = [block for block in md.split("\n\n") if block.startswith("|")]
    assert len(tables) == 2  # the runs and the worst problems, each one unbroken table
    for table in tables:
        rows = table.splitlines()
        assert set(rows[1]) == {"|", "-"}  # the separator right under the header
        widths = {row.count(" | ") for row in [rows[0], *rows[2:]] if "\\|" not in row}
        assert len(widths) == 1 and rows[1].count("|") == rows[0].count(" | ") + 2, table
    ticks = re.findall(r'text-anchor="middle">(\d+(?:\.\d+)?)</text>', html)
    assert ticks and all(float(t) % 50 == 0 for t in ticks), ticks


def test_the_trace_page_shows_the_question_the_path_text_and_a_colour_scale(
    sweeps: Path,
) -> None:
    store = ResultStore(sweeps / "sweep-a/budget-512")
    record = store.records()[0]
    graph = store.graph(record["problem_id"])
    assert graph is not None and record["question"].startswith("Pam has 10 apples")
    page = trace_html(graph, record)
    assert 'id="question">Pam has 10 apples' in page
    assert 'id="scale-bar"' in page and "linear-gradient" in page
    assert "the whole path (root to this node)" in page


def test_dot_output_renders_in_graphviz(tmp_path: Path) -> None:
    dot_bin = shutil.which("dot")
    if dot_bin is None:
        pytest.skip("graphviz's `dot` is not installed: run `make graphviz` (apt-get)")
    graph = {
        "problem_id": 'p"1',
        "nodes": [
            {"id": "r", "parent": None, "status": "expanded", "answer": None, "scores": {}},
            {"id": "r.0", "parent": "r", "status": "finished", "answer": "4\\n2",
             "scores": {"prm": {"value": 0.25}}},
        ],
    }  # fmt: skip
    source = trace_dot(graph, ["r", "r.0"])
    assert "\\\\n" not in source.replace("4\\\\n2", "")  # a line break is \n, never \\n
    done = subprocess.run(
        [dot_bin, "-Tplain"], input=source, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # -Tplain writes each label with its line breaks as Graphviz resolved them
    node = next(line for line in done.stdout.splitlines() if line.startswith('node "r.0"'))
    assert '"r.0 [finished]\\nanswer 4\\\\n2\\nprm 0.25"' in node, node
    svg = subprocess.run([dot_bin, "-Tsvg"], input=source, capture_output=True, text=True)
    assert svg.returncode == 0 and svg.stdout.count("<text") == 1 + 3  # r: 1 line, r.0: 3


def test_a_schema_1_store_is_upgraded_in_place_and_keeps_its_results(tmp_path: Path) -> None:
    import sqlite3

    from branchwise.core.problem import Problem
    from branchwise.orchestrator import store as store_module
    from branchwise.orchestrator.results import ProblemResult

    old_schema = store_module._SCHEMA.replace("    question TEXT,\n", "")
    folder = tmp_path / "old"
    folder.mkdir()
    db = sqlite3.connect(folder / store_module.DB_NAME)
    db.executescript(old_schema)
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)", [("format", store_module.FORMAT), ("schema_version", "1")]
    )
    db.execute(
        "INSERT INTO problem (problem_id, position, question_hash, status, answer) "
        "VALUES ('a', 0, 'h', 'done', '4')"
    )
    db.commit()
    db.close()
    store = ResultStore(folder)
    (old,) = store.records()
    assert old["answer"] == "4" and old["question"] is None
    assert store.claim(Problem(id="b", question="2+2?"), 1)
    assert store.finish(ProblemResult("b", "4"), candidates=[], with_graph=False)
    assert [r["question"] for r in store.records()] == [None, "2+2?"]
    store.close()
    assert ResultStore(folder).records()[1]["question"] == "2+2?"  # opens as schema 2 now

"""Small CLI edges (issue 24): file names from ids, --budgets folders, a writer that ends first,
a closed stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from branchwise.orchestrator.cli import main
from branchwise.orchestrator.cli_runs import file_safe
from branchwise.orchestrator.exit_codes import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE
from branchwise.orchestrator.store import ResultStore
from tests.conftest import make_problem
from tests.unit.test_storage_faults import _dataset, _recipe

REPO = Path(__file__).resolve().parents[2]


def test_trace_file_names_from_ids_stay_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for hostile in ("a/../../../x", "../x", "/etc/passwd", "a\\b", "..", "\x00", "é" * 300):
        name = file_safe(hostile)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert len(name.encode()) < 200
    assert file_safe("p12") == "p12"
    assert file_safe("a/b") != file_safe("a_b")  # kept apart by the hash

    data = tmp_path / "problems.jsonl"
    data.write_text('{"id": "a/../../../x", "question": "Start with 3. Add 2.", "answer": "5"}\n')
    recipe = _recipe(tmp_path, data)
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--quiet", "--traces"]) in (0, 1)
    monkeypatch.chdir(work)
    assert main(["trace", str(out), "--problem", "a/../../../x", "--format", "json"]) == 0
    made = [p.name for p in work.iterdir()]
    assert len(made) == 1 and made[0].startswith("trace-a_.._.._.._x-")
    assert not (tmp_path / "x.json").exists()


def test_budgets_refuses_a_folder_of_other_things_and_resumes_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 3))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    argv = ["eval", str(recipe), "--budgets", "200,400", "--quiet"]
    assert main([*argv, "--out", str(busy)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "not a budget sweep folder (holds notes.txt)" in err and err.count("\n") == 1
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    sweep = tmp_path / "sweep"
    assert main([*argv, "--out", str(sweep)]) == 0
    assert main([*argv, "--out", str(sweep)]) == 0  # a rerun resumes its own folders
    assert sorted(p.name for p in sweep.iterdir()) == ["budget-200", "budget-400"]


def test_a_writer_that_ends_first_says_another_is_still_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path, 3)
    recipe = _recipe(tmp_path, data)
    out = tmp_path / "run"
    other = ResultStore(out, create=True)  # another live writer (this process) holds p1
    assert other.claim(make_problem(1), 1)
    assert main(["eval", str(recipe), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "note: 1 problems are still running in another writer" in printed
    other.close()


@pytest.mark.parametrize("command", [["strategies"], ["scorers"]])
def test_a_closed_stdout_ends_quietly_with_the_sigpipe_code(command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "branchwise", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert err == ""

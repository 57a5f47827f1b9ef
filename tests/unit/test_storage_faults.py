"""Storage faults end a run at once, in one line, with exit code 4; finished work is kept.

Reproduces the hang of issue 24: a claim that could not be stored killed the task starting
problems and the loop reading results waited forever.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from branchwise.core.errors import DatasetError, StoreFault
from branchwise.core.problem import Problem
from branchwise.orchestrator.cli import main
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.exit_codes import EXIT_BAD_INPUT, EXIT_STORE_FAULT
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.store import DatasetIdentity, ResultStore
from tests.conftest import make_problem, scripted_recipe

REPO = Path(__file__).resolve().parents[2]


def _dataset(folder: Path, count: int) -> Path:
    data = folder / "problems.jsonl"
    rows = []
    for i in range(count):
        p = make_problem(i)
        rows.append({"id": p.id, "question": p.question, "answer": p.reference})
        rows[-1]["solution"] = p.solution
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def _recipe(folder: Path, dataset: Path) -> Path:
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"engine: {{kind: scripted, error_rate: 0.3, solutions: {dataset.name}}}\n"
        "strategy: {name: self_consistency, n: 4}\n"
        "sampling: {max_tokens: 64}\n"
        f"dataset: {{path: {dataset.name}}}\n"
    )
    return recipe


def test_a_claim_that_fails_ends_the_stream_instead_of_hanging() -> None:
    problems = [make_problem(i) for i in range(6)]
    recipe = scripted_recipe({"name": "self_consistency", "n": 2}, concurrency=2)

    def claim(problem: Problem, index: int) -> bool:
        if index == 3:
            raise StoreFault("claiming failed: database or disk is full")
        return True

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=ScriptedEngine()) as orchestrator:
            return [r async for r in orchestrator.stream(problems, claim=claim)]

    started = time.monotonic()
    with pytest.raises(StoreFault, match="disk is full"):
        asyncio.run(asyncio.wait_for(go(), timeout=20))
    assert time.monotonic() - started < 10


def test_a_lone_surrogate_reaching_the_store_is_a_store_fault(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "run", create=True) as store:
        with pytest.raises(StoreFault, match=r"'\\ud800', which is not valid Unicode"):
            store.claim(Problem(id="b\ud800", question="Add 2."), 0)
        assert store.claim(Problem(id="ok", question="Add 2."), 1)  # the store still works
        with pytest.raises(StoreFault, match="not valid Unicode"):
            store.check_questions([Problem(id="ok", question="x\udcff")])


def test_a_full_database_fails_the_write_in_one_line_and_keeps_what_was_stored(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    with ResultStore(folder, create=True) as store:
        store.begin_run(recipe={}, fingerprint="f", dataset=DatasetIdentity("d", "h", 1))
        assert store.claim(Problem(id="p0", question="q"), 0)
        store.finish(ProblemResult("p0", "1"), candidates=[], with_graph=False)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
        assert store.claim(Problem(id="p1", question="q"), 1)
        big = ProblemResult("p1", "x" * 100_000)
        with pytest.raises(StoreFault, match="storing problem 'p1' failed: database or disk"):
            store.finish(big, candidates=[], with_graph=False)
        assert not store._db.in_transaction  # rolled back, not left holding the lock
    with ResultStore(folder) as store:
        assert store.done_ids() == {"p0"}


def test_a_dataset_line_with_a_lone_surrogate_is_a_load_error_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "p.jsonl"
    data.write_text('{"id": "a", "question": "q"}\n{"id": "b", "question": "x\\ud800y"}\n')
    with pytest.raises(DatasetError, match=r"p.jsonl:2: field 'question' holds a lone"):
        load_problems(data)


def test_eval_with_a_surrogate_id_ends_at_once_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text('{"id": "a", "question": "Add 2."}\n{"id": "b\\ud800", "question": "q"}\n')
    recipe = _recipe(tmp_path, data)
    assert main(["eval", str(recipe), "--out", str(tmp_path / "o"), "--quiet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "problems.jsonl:2: field 'id' holds a lone surrogate" in err


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE as a full disk")
def test_a_disk_that_fills_mid_run_ends_eval_in_seconds_and_resume_finishes(
    tmp_path: Path,
) -> None:
    """The disk fills while problems run (a file-size limit: writes fail with EFBIG)."""
    recipe = _recipe(tmp_path, _dataset(tmp_path, 200))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "branchwise.orchestrator.cli", "eval", str(recipe)]
    command += ["--out", str(out), "--quiet", "--traces"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: _limit_file_size(2_000_000),
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == EXIT_STORE_FAULT, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "disk I/O error" in lines[0] and "rerun to resume" in lines[0]
    with sqlite3.connect(out / "results.sqlite") as db:
        done_before = db.execute("SELECT COUNT(*) FROM problem WHERE status='done'").fetchone()[0]
    assert 0 < done_before < 200
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode in (0, 1), resumed.stderr
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = dict(db.execute("SELECT problem_id, attempts FROM problem WHERE status='done'"))
    assert len(rows) == 200
    # problems stored before the fault were not run again
    with sqlite3.connect(out / "results.sqlite") as db:
        once = db.execute("SELECT COUNT(*) FROM problem WHERE attempts = 1").fetchone()[0]
    assert once >= done_before


def _finished_store(tmp_path: Path, count: int = 60) -> tuple[Path, Path]:
    recipe = _recipe(tmp_path, _dataset(tmp_path, count))
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--quiet", "--traces"]) == 0
    return recipe, out


@pytest.mark.parametrize("damage", ["page-headers", "cell-bytes"])
def test_a_damaged_store_is_one_line_and_exit_2_for_summary_trace_and_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    recipe, out = _finished_store(tmp_path)
    db = out / "results.sqlite"
    size = db.stat().st_size
    with db.open("r+b") as file:  # overwrite pages in the middle: the problem table's
        for offset in range(size // 3, size // 3 + 8 * 4096, 4096):
            if damage == "page-headers":
                file.seek(offset)
                file.write(b"\x0d" + b"\xff" * 7)
            else:
                file.seek(offset + 100)
                file.write(b"\xff" * 600)
    capsys.readouterr()
    for argv in (
        ["summary", str(out)],
        ["trace", str(out), "--problem", "p40", "--out", str(tmp_path / "t.json")],
        ["eval", str(recipe), "--out", str(out), "--quiet"],
    ):
        assert main(argv) == EXIT_BAD_INPUT, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the results store is damaged" in err[0], (argv, err)


def test_a_reader_takes_no_lock_and_writes_nothing(tmp_path: Path) -> None:
    _, out = _finished_store(tmp_path, 4)
    before = sorted(p.name for p in out.iterdir())
    with ResultStore(out) as writer:
        writer._db.execute("BEGIN EXCLUSIVE")  # a writer holding the lock
        with ResultStore(out, read_only=True) as reader:
            assert len(reader.records()) == 4
        writer._db.execute("ROLLBACK")
    assert sorted(p.name for p in out.iterdir()) == before


def _in_read_only_mount(folder: Path, commands: list[list[str]]) -> list[tuple[int, str]]:
    """Run each command with ``folder`` remounted read-only (a private user namespace)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = []
    for command in commands:
        script = f'mount --bind -o ro "{folder}" "{folder}" && cd "{folder}" && exec "$@"'
        proc = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, "sh", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        results.append((proc.returncode, proc.stdout + proc.stderr))
    return results


def _can_mount_read_only(tmp_path: Path) -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "-rm", "mount", "--bind", "-o", "ro", str(tmp_path), str(tmp_path)],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def test_summary_report_compare_and_trace_read_a_store_on_read_only_media(
    tmp_path: Path,
) -> None:
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no user namespaces here to mount a folder read-only")
    recipe, _ = _finished_store(tmp_path, 6)
    cli = [sys.executable, "-m", "branchwise.orchestrator.cli"]
    elsewhere = tmp_path.parent / f"{tmp_path.name}-out"
    elsewhere.mkdir()
    (summary, _), (report, _), (compare, _), (trace, _), (run, run_err) = _in_read_only_mount(
        tmp_path,
        [
            [*cli, "summary", "run"],
            [*cli, "report", "run", "--out", str(elsewhere / "r.html")],
            [*cli, "compare", "run", "run"],
            [*cli, "trace", "run", "--problem", "p2", "--out", str(elsewhere / "t.json")],
            [*cli, "eval", str(recipe), "--out", "run", "--quiet"],
        ],
    )
    assert (summary, report, compare, trace) == (0, 0, 0, 0)
    assert (elsewhere / "r.html").is_file() and (elsewhere / "t.json").is_file()
    assert run == EXIT_BAD_INPUT and "read-only, cannot run into it" in run_err
    assert len(run_err.strip().splitlines()) == 1


def test_a_failing_heartbeat_ends_eval_with_its_line_not_a_stray_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from branchwise.orchestrator import evaluate

    def broken(self: ResultStore) -> None:
        raise StoreFault(f"{self.path}: refreshing claims failed: disk I/O error")

    monkeypatch.setattr(evaluate, "HEARTBEAT_SECONDS", 0.001)
    monkeypatch.setattr(ResultStore, "heartbeat", broken)
    recipe = _recipe(tmp_path, _dataset(tmp_path, 20))
    code = main(["eval", str(recipe), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_STORE_FAULT
    assert err == [err[0]] and "refreshing claims failed" in err[0]

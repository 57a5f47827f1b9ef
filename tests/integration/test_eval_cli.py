"""`branchwise eval` on real vLLM: SIGKILL mid-run, resume, and no engine process left behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from branchwise.orchestrator.store import ResultStore
from tests.unit.test_cli_and_store import comparable

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "recipes" / "demo.yaml"
ARGS = ["--limit", "12", "--set", "strategy.n=8", "--concurrency", "2", "--quiet"]


def _eval(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "branchwise.orchestrator.cli",
            "eval",
            str(DEMO),
            "--out",
            str(out),
            *ARGS,
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done(out: Path) -> int:
    if not (out / "results.sqlite").exists():
        return 0
    try:
        with sqlite3.connect(out / "results.sqlite", timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM problem WHERE status='done'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run_and_leaves_no_engine(
    tmp_path: Path,
) -> None:
    reference = tmp_path / "uninterrupted"
    whole = _eval(reference)
    stdout, stderr = whole.communicate(timeout=900)
    assert whole.returncode == 0, stderr
    assert "problems: 12  failed: 0" in stdout
    assert "INFO" not in stdout  # vLLM's log lines went to engine.log
    assert (reference / "engine.log").stat().st_size > 0

    out = tmp_path / "killed"
    writer = _eval(out)
    deadline = time.monotonic() + 900
    while _done(out) < 3 and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.2)
    engine_processes = [
        p
        for p in psutil.Process(writer.pid).children(recursive=True)
        if "watchdog" not in " ".join(p.cmdline())
    ]
    assert engine_processes, "vLLM's engine core should run in a process of its own"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    done_at_kill = _done(out)
    assert 3 <= done_at_kill < 12
    _gone, alive = psutil.wait_procs(engine_processes, timeout=30)
    assert not alive, f"orphaned engine processes: {[p.pid for p in alive]}"

    resumed = _eval(out)
    stdout, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = list(db.execute("SELECT problem_id, status FROM problem ORDER BY position"))
    assert len(rows) == 12 and all(status == "done" for _, status in rows)
    with ResultStore(out) as a, ResultStore(reference) as b:
        got, want = a.records(), b.records()
        assert comparable(got) == comparable(want)
    print(f"killed after {done_at_kill}/12 problems; resumed to 12, equal to the whole run")
    print(stdout)

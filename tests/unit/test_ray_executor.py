"""``branchwise eval --executor ray``: two Ray workers on a local cluster, one shared store.

The cluster is started for the run on 127.0.0.1 (``ray.init`` with two CPUs); the workers
claim problems from the same results store. The stored results must equal a single-process
run of the same recipe and seed, each problem stored once. Skipped where Ray is not
installed (``pip install -e ".[ray]"``; ``make test`` installs it, ``make extra-ray`` too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from branchwise.orchestrator.store import ResultStore

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "recipes" / "tree_search_scripted.yaml"


def _eval(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "branchwise", "eval", str(RECIPE), "--out", str(out),
               "--limit", "16", "--seed", "3", "--concurrency", "4", "--quiet", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def _records(folder: Path) -> list[dict[str, Any]]:
    with ResultStore(folder) as store:
        return store.records()


def test_ray_workers_share_one_store_and_equal_a_single_process_run(tmp_path: Path) -> None:
    local = _eval(tmp_path / "local")
    assert local.returncode == 0, local.stderr[-2000:]
    spread = _eval(tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert spread.returncode == 0, spread.stderr[-2000:]
    assert "Traceback" not in spread.stderr
    a, b = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert [r["problem_id"] for r in b] == [r["problem_id"] for r in a]  # each once, none lost
    assert len({r["problem_id"] for r in b}) == 16
    owners = {r["owner"] for r in b}
    assert len(owners) == 2, owners  # both workers ran problems
    for mine, theirs in zip(a, b, strict=True):
        assert mine["error"] is None and theirs["error"] is None
        assert mine["answer"] == theirs["answer"]
        assert mine["usage"]["generated_tokens"] == theirs["usage"]["generated_tokens"]


def test_ray_without_out_is_a_one_line_error(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "branchwise.orchestrator.cli",
        "eval",
        str(RECIPE),
        "--executor",
        "ray",
    ]
    done = subprocess.run(
        command, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--executor ray needs --out" in done.stderr and "Traceback" not in done.stderr

"""A fleet of two real `vllm serve` processes, one killed in the middle of an evaluation.

The evaluation (``branchwise eval ... --out``, particle filtering on the testbed with the
exact step checker as the PRM) must finish
with every problem stored exactly once and no error, and each problem's answer and
generated tokens must equal a run of the same recipe on one server: the requests the dead
server was working on were sent again elsewhere (with the same seeds, so the same tokens),
and nothing it generated for them was counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from branchwise.orchestrator.engines.vllm_server import VLLMServer
from branchwise.orchestrator.store import ResultStore, is_store
from tests.integration.conftest import POLICY, REPO

pytestmark = pytest.mark.vllm
TESTBED_RECIPE = REPO / "examples" / "recipes" / "particle_filter_prm.yaml"
PROBLEMS = 24
SERVER_ARGS = [
    "--dtype", "float32", "--max-model-len", "256", "--gpu-memory-utilization", "0.1",
    "--enforce-eager", "--enable-prompt-tokens-details", "--seed", "0",
    "--no-enable-chunked-prefill", "--block-size", "32",
]  # fmt: skip


def _recipe(tmp: Path, name: str, urls: list[str]) -> Path:
    """The testbed's particle-filter recipe on an ``openai`` fleet of ``urls``."""
    data: dict[str, Any] = yaml.safe_load(TESTBED_RECIPE.read_text())
    data["engine"] = {"kind": "openai", "base_urls": urls, "model": "policy"}
    data["strategy"].update({"particles": 4})
    data["scorers"] = [{"kind": "arithmetic_steps", "name": data["strategy"]["scorer"]}]
    data["dataset"]["path"] = str((TESTBED_RECIPE.parent / data["dataset"]["path"]).resolve())
    data["dataset"]["limit"] = PROBLEMS
    data["concurrency"] = 8
    data["seed"] = 5
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _command(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "branchwise", "eval", str(recipe), "--out", str(out),
            "--quiet"]  # fmt: skip


def _records(folder: Path) -> list[dict[str, Any]]:
    """Every finished or failed problem of a results store (none while it does not exist)."""
    if not is_store(folder):
        return []
    with ResultStore(folder) as store:
        return store.records()


def test_an_evaluation_survives_a_server_killed_mid_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    logs = REPO / ".pytest_cache"
    with (
        VLLMServer(
            POLICY, served_name="policy", args=SERVER_ARGS, log_path=logs / "fleet_a.log"
        ) as a,
        VLLMServer(
            POLICY, served_name="policy", args=SERVER_ARGS, log_path=logs / "fleet_b.log"
        ) as b,
    ):
        reference_out = tmp_path / "reference"
        subprocess.run(
            _command(_recipe(tmp_path, "one", [a.url]), reference_out),
            env=env, cwd=REPO, check=True, capture_output=True, timeout=600,
        )  # fmt: skip

        fleet_out = tmp_path / "fleet"
        run = subprocess.Popen(
            _command(_recipe(tmp_path, "fleet", [a.url, b.url]), fleet_out),
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            if len(_records(fleet_out)) >= 3:
                break
            time.sleep(0.1)
        stored_before_kill = len(_records(fleet_out))
        b.kill()
        killed = time.monotonic()
        _, stderr = run.communicate(timeout=600)
        print(
            f"\nfleet: server B killed with {stored_before_kill}/{PROBLEMS} problems stored; "
            f"the run finished {time.monotonic() - killed:.1f} s later; "
            f"{stderr.count('marked down')} mark-down message(s)"
        )

    assert run.returncode == 0, stderr[-2000:]
    assert stored_before_kill < PROBLEMS, "the run ended before the server was killed"
    assert "marked down" in stderr  # the engine saw the server die and failed over
    fleet = _records(fleet_out)
    ids = [r["problem_id"] for r in fleet]
    assert len(ids) == PROBLEMS and len(set(ids)) == PROBLEMS  # none lost, none twice
    assert all(r["error"] is None for r in fleet), [r["error"] for r in fleet if r["error"]]
    reference = {r["problem_id"]: r for r in _records(reference_out)}
    for record in fleet:
        same = reference[record["problem_id"]]
        assert record["answer"] == same["answer"]
        assert record["usage"]["generated_tokens"] == same["usage"]["generated_tokens"]

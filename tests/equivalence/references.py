"""The reference libraries' numbers: recorded, or computed live in their own environment.

By default the tests read ``recorded_references.json``, made by running treequest's and
its_hub's released packages on the cases in ``specs/`` (the scripts ``treequest_reference.py``
and ``its_hub_reference.py``). With ``BRANCHWISE_LIVE_REFERENCES=1`` (``make equivalence``)
the references are recomputed first: the environment ``.venv-bench/references`` is made on first
use from ``references-requirements.txt`` (pinned), the scripts run there, and with
``BRANCHWISE_RECORD_REFERENCES=1`` the result replaces the recorded file. treequest's AB-MCTS-M
fits its model with NUTS, so the live run takes minutes (about one per decision case).

    python -m tests.equivalence.references   # recompute and record
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".venv-bench" / "references"
REQUIREMENTS = HERE / "references-requirements.txt"
RECORDED = HERE / "recorded_references.json"
RUNS = {
    "treequest_decisions": ("treequest_reference.py", "treequest_decisions.json"),
    "treequest_searches": ("treequest_reference.py", "treequest_searches.json"),
    "its_hub": ("its_hub_reference.py", "its_hub.json"),
}


def reference_python() -> Path:
    """The references environment's interpreter, made (and its packages installed) on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    return python


def compute(names: tuple[str, ...] = tuple(RUNS)) -> dict[str, Any]:
    """Run the reference scripts in their environment on the recorded specs."""
    python = reference_python()
    out: dict[str, Any] = {}
    for name in names:
        script, spec = RUNS[name]
        done = subprocess.run(
            [str(python), str(HERE / script), str(HERE / "specs" / spec)],
            check=True,
            capture_output=True,
            text=True,
        )
        out[name] = json.loads(done.stdout)
    return out


@functools.cache
def references() -> dict[str, Any]:
    """The reference numbers the tests compare against (recorded unless asked to be live)."""
    if os.environ.get("BRANCHWISE_LIVE_REFERENCES") == "1":
        fresh = compute()
        if os.environ.get("BRANCHWISE_RECORD_REFERENCES") == "1":
            RECORDED.write_text(json.dumps(fresh, indent=1) + "\n")
        return fresh
    recorded: dict[str, Any] = json.loads(RECORDED.read_text())
    return recorded


if __name__ == "__main__":
    RECORDED.write_text(json.dumps(compute(), indent=1) + "\n")

"""The engine watchdog: a SIGKILLed owner's child processes (and theirs) do not live on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
OWNER = """
import subprocess, sys, time
from branchwise.orchestrator.engines.watchdog import start_watchdog
start_watchdog()
# a child with a grandchild, like vLLM's engine core and its worker
child = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"])
print(child.pid, flush=True)
time.sleep(300)
"""


def test_killing_the_owner_kills_its_descendants() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert owner.stdout is not None
    child = psutil.Process(int(owner.stdout.readline()))
    deadline = time.monotonic() + 20
    while not child.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    family = [child, *child.children()]
    assert len(family) == 2
    time.sleep(1.0)  # the watchdog notes descendants every half second
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"left behind: {[p.pid for p in alive]}"

"""The engine watchdog: a SIGKILLed owner's child processes (and theirs) do not live on."""

from __future__ import annotations

import contextlib
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


RACE = """
import os, signal, subprocess, sys, time
from branchwise.orchestrator.engines.watchdog import start_watchdog
start_watchdog()
time.sleep(float(sys.argv[1]))  # 0: die before the watchdog has even started
if sys.argv[2] == "fork":
    pid = os.fork()
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    print(pid, flush=True)
else:
    # a child with a grandchild, started just before the owner dies
    child = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time; g = subprocess.Popen(['sleep', '300']); "
        "print(g.pid, flush=True); time.sleep(300)"], stdout=subprocess.PIPE, text=True)
    grandchild = child.stdout.readline().strip()
    print(child.pid, grandchild, flush=True)
time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _race(settle: float, how: str) -> list[psutil.Process]:
    owner = subprocess.Popen(
        [sys.executable, "-c", RACE, str(settle), how],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    family = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):  # already killed
            family.append(psutil.Process(pid))
    owner.wait(timeout=30)
    assert owner.returncode == -signal.SIGKILL
    _, alive = psutil.wait_procs(family, timeout=15)
    for process in alive:
        process.kill()
    return alive


def test_children_started_just_before_the_owner_dies_are_killed() -> None:
    for _ in range(5):
        assert _race(1.0, "exec") == []


def test_everything_is_killed_when_the_owner_dies_before_the_watchdog_attaches() -> None:
    for _ in range(3):
        assert _race(0.0, "exec") == []


def test_a_forked_child_started_just_before_the_owner_dies_is_killed() -> None:
    for _ in range(3):
        assert _race(1.0, "fork") == []
    assert _race(0.0, "fork") == []

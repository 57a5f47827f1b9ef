"""A watchdog that kills an engine's processes when the process that owns them dies.

vLLM runs its engine core (and workers) in processes of their own. If the owner is killed
outright (SIGKILL, the OOM killer) nothing in it runs to shut them down, and they live on
holding memory (GPU memory on a GPU). :func:`start_watchdog` starts this file as a small
separate process, in its own session so a signal to the owner's group leaves it alone. It
waits on the owner through a pidfd and, every half second, notes the owner's descendants;
when the owner is gone it kills the noted processes and their children. ``psutil`` checks
each process's start time, so a reused pid is never killed. The owner stops the watchdog when
it closes the engine itself.

The file runs as a script (``python -I watchdog.py PID``) and imports nothing of Branchwise.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

import psutil

POLL_SECONDS = 0.5


def start_watchdog(owner: int | None = None) -> subprocess.Popen[bytes]:
    """Watch ``owner`` (default: this process); stop it with ``terminate()`` on a clean close."""
    return subprocess.Popen(
        [sys.executable, "-I", os.path.abspath(__file__), str(owner or os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def stop_watchdog(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _descendants(owner: psutil.Process) -> list[psutil.Process]:
    try:
        return [p for p in owner.children(recursive=True) if p.pid != os.getpid()]
    except psutil.Error:
        return []


def watch(owner_pid: int) -> None:
    """Return once ``owner_pid`` has died and its noted descendants are killed."""
    try:
        owner = psutil.Process(owner_pid)
        pidfd = os.pidfd_open(owner_pid)
    except (psutil.Error, OSError):
        return
    noted: dict[int, psutil.Process] = {}
    while True:
        for process in _descendants(owner):
            noted[process.pid] = process
        ready, _, _ = select.select([pidfd], [], [], POLL_SECONDS)
        if ready:
            break
    victims = dict(noted)
    for process in noted.values():
        for child in _descendants(process):
            victims[child.pid] = child
    for process in victims.values():
        try:
            if process.is_running():
                process.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    watch(int(sys.argv[1]))

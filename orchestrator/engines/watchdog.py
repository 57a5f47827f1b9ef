"""A watchdog that kills an engine's processes when the process that owns them dies.

vLLM runs its engine core (and workers) in processes of their own. If the owner is killed
outright (SIGKILL, the OOM killer) nothing in it runs to shut them down, and they live on
holding memory (GPU memory on a GPU). :func:`start_watchdog` starts this file as a small
separate process, in its own session so a signal to the owner's group leaves it alone.

Once the owner dies, the processes it started are reparented and its process tree is gone,
so the watchdog cannot rely on noting the tree in time. Three marks make every process the
owner started findable afterwards, with no race:

- the owner hands the watchdog a pidfd of itself, so a death before the watchdog attached
  is seen at once, and a reused pid is never taken for the owner;
- the owner's environment carries a mark (:data:`MARK_VARIABLE`) that every program it
  starts after the watchdog inherits, however it is started;
- a process forked without a new program (``os.fork``, multiprocessing's fork) writes its
  pid down a pipe to the watchdog the moment it exists (an ``os.register_at_fork`` hook).

Every half second the watchdog also notes the owner's descendants (processes started before
it). When the owner is gone it kills all of these and their children, looking again until
no new one shows (a dying child may have started another). ``psutil`` checks each process's
start time, so a reused pid is never killed. The owner stops the watchdog when it closes the
engine itself.

The file runs as a script (``python -I watchdog.py PID PIDFD PIPE MARK``) and imports nothing
of Branchwise.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
import uuid

import psutil

POLL_SECONDS = 0.5
FORK_GRACE_SECONDS = 10.0
"""How long, after the owner died, the watchdog waits for forks still holding its pipe."""
MARK_VARIABLE = "BRANCHWISE_WATCHDOG_MARK"
_fork_pipes: set[int] = set()
"""Write ends of the pipes to this process's live watchdogs (the fork hook writes to each)."""


def _tell_watchdogs_of_fork() -> None:
    line = f"{os.getpid()}\n".encode()
    for fd in list(_fork_pipes):
        with contextlib.suppress(OSError):
            os.write(fd, line)


os.register_at_fork(after_in_child=_tell_watchdogs_of_fork)


def start_watchdog(owner: int | None = None) -> subprocess.Popen[bytes]:
    """Watch ``owner`` (default: this process); stop it with ``stop_watchdog`` on a clean close.

    Watching this process marks what it starts from now on (see the module docstring);
    another process is watched through its tree only.
    """
    pid = owner or os.getpid()
    own = pid == os.getpid()
    mark = f"{pid}-{uuid.uuid4().hex[:12]}" if own else ""
    pidfd = read_end = write_end = -1
    if own:
        pidfd = os.pidfd_open(pid)
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # a fork never waits on a full pipe
        marks = [m for m in os.environ.get(MARK_VARIABLE, "").split(",") if m]
        os.environ[MARK_VARIABLE] = ",".join([*marks, mark])
    script = [sys.executable, "-I", os.path.abspath(__file__)]
    try:
        process = subprocess.Popen(
            [*script, str(pid), str(pidfd), str(read_end), mark],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            pass_fds=(pidfd, read_end) if own else (),
        )
    finally:
        for fd in (pidfd, read_end):
            if fd >= 0:
                os.close(fd)
    if own:
        _fork_pipes.add(write_end)
        process.fork_pipe = write_end  # type: ignore[attr-defined]
        process.mark = mark  # type: ignore[attr-defined]
    return process


def stop_watchdog(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    fd = getattr(process, "fork_pipe", None)
    if fd is not None and fd in _fork_pipes:
        _fork_pipes.discard(fd)
        os.close(fd)
    mark = getattr(process, "mark", "")
    marks = [m for m in os.environ.get(MARK_VARIABLE, "").split(",") if m and m != mark]
    if marks:
        os.environ[MARK_VARIABLE] = ",".join(marks)
    else:
        os.environ.pop(MARK_VARIABLE, None)
    if process.poll() is None:
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


def _marked(mark: str) -> list[psutil.Process]:
    """Every process whose environment carries ``mark`` (programs the owner started)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            marks = process.environ().get(MARK_VARIABLE, "")
        except psutil.Error:
            continue
        if mark in marks.split(","):
            found.append(process)
    return found


def _read_forks(fd: int, noted: dict[int, psutil.Process]) -> bool:
    """Note the pids forked children wrote down the pipe (no block); False once no process
    holds its other end any more (every fork has ended or started another program)."""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        for word in data.split():
            with contextlib.suppress(psutil.Error, ValueError):
                noted.setdefault(int(word), psutil.Process(int(word)))


def watch(owner_pid: int, pidfd: int = -1, fork_pipe: int = -1, mark: str = "") -> None:
    """Return once ``owner_pid`` has died and every process it started is killed."""
    noted: dict[int, psutil.Process] = {}
    owner: psutil.Process | None = None
    try:
        if pidfd < 0:
            pidfd = os.pidfd_open(owner_pid)
        ready, _, _ = select.select([pidfd], [], [], 0)
        if not ready:  # alive: its pid is its own (the pidfd holds it)
            owner = psutil.Process(owner_pid)
    except (psutil.Error, OSError):
        if not mark:
            return
    if fork_pipe >= 0:
        os.set_blocking(fork_pipe, False)
    waiting = [fd for fd in (pidfd, fork_pipe) if fd >= 0]
    while owner is not None:
        for process in _descendants(owner):
            noted[process.pid] = process
        ready, _, _ = select.select(waiting, [], [], POLL_SECONDS)
        if fork_pipe in ready:
            _read_forks(fork_pipe, noted)
        if pidfd in ready:
            break
    _kill_all(noted, fork_pipe, mark)


def _kill_all(noted: dict[int, psutil.Process], fork_pipe: int, mark: str) -> None:
    """Kill until a look finds no new process and no fork can still report itself: a child
    forked just before the owner died may not have run yet, but it holds the pipe open."""
    killed: set[tuple[int, float]] = set()
    pipe_open = fork_pipe >= 0
    deadline = time.monotonic() + FORK_GRACE_SECONDS
    while True:
        if pipe_open:
            pipe_open = _read_forks(fork_pipe, noted)
        victims = dict(noted)
        if mark:
            victims.update((p.pid, p) for p in _marked(mark))
        for process in list(victims.values()):
            for child in _descendants(process):
                victims[child.pid] = child
        fresh = False
        for process in victims.values():
            try:
                key = (process.pid, process.create_time())
                if key not in killed and process.is_running():
                    process.kill()
                    killed.add(key)
                    fresh = True
            except psutil.Error:
                pass
        if fresh:
            psutil.wait_procs(list(victims.values()), timeout=0.2)
        elif not pipe_open or time.monotonic() > deadline:
            return
        else:
            select.select([fork_pipe], [], [], 0.1)


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

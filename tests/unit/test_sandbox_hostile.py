"""Hostile programs against the code sandbox, as root and as an unprivileged user: every one
is contained (issue 24). The host side checks what really happened, not what the program
says: the evaluating process and a sentinel process live on with their limits, nothing is
written outside the run's folder, no shell ran, no connection arrived, no process is left.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from branchwise.verifiers.sandbox_bwrap import bwrap_works
from tests.hostile_programs import run_all

REPO = Path(__file__).resolve().parents[2]
USER = "bw-sandbox-hostile"

pytestmark = pytest.mark.skipif(
    bwrap_works() is not None, reason=f"no bubblewrap here ({bwrap_works()}); `make setup`"
)


def _contained(found: dict[str, Any], host_dir: Path, sentinel: psutil.Process) -> None:
    for name, (out, _verdict, layers) in found.items():
        assert "bubblewrap" in layers, (name, layers)
        # the parent it sees is the sandbox's own first process: signalling it is harmless
        if name != "kill_parent":
            assert f"{name} DONE" not in out, (name, out)
    assert "root:" not in found["read_shadow"][0]
    assert "top secret" not in found["read_host_tmp"][0]
    assert "# Branch" not in found["read_project"][0]
    assert "memory refused MemoryError" in found["memory"][0], found["memory"]
    assert "big_file refused" in found["big_file"][0], found["big_file"]
    assert "started 200" not in found["fork_bomb"][0], found["fork_bomb"]
    assert sentinel.is_running() and sentinel.status() != psutil.STATUS_ZOMBIE
    limits = Path(f"/proc/{sentinel.pid}/limits").read_text()
    open_files = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert int(open_files.split()[3]) > 3  # the prlimit did not reach it
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret"]
    assert "pwned" not in (REPO / "README.md").read_text()[-50:]


@pytest.fixture
def host_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="bw-hostile-host-"))
    folder.chmod(0o777)
    (folder / "secret").write_text("top secret")
    (folder / "secret").chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        yield server


def _no_connection(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize("audit_hook", [True, False])
def test_hostile_programs_are_contained_as_this_user(
    host_dir: Path, listener: socket.socket, audit_hook: bool
) -> None:
    sentinel = subprocess.Popen(["sleep", "300"])
    try:
        before = {p.pid for p in psutil.process_iter()}
        port = listener.getsockname()[1]
        found = run_all(sentinel.pid, str(host_dir), str(REPO), port, audit_hook=audit_hook)
        _contained(found, host_dir, psutil.Process(sentinel.pid))
        assert _no_connection(listener)
        left = {p.pid for p in psutil.process_iter()} - before
        assert not [p for p in left if psutil.pid_exists(p) and _is_sleep(p)]
    finally:
        sentinel.kill()
        sentinel.wait()


def _is_sleep(pid: int) -> bool:
    """One of the fork bomb's `sleep 30` (other users of the machine run their own sleeps)."""
    try:
        return psutil.Process(pid).cmdline() == ["/bin/sleep", "30"]
    except psutil.Error:
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="needs root")
def test_hostile_programs_are_contained_as_an_unprivileged_user(
    host_dir: Path, listener: socket.socket
) -> None:
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
        account = pwd.getpwnam(USER)
    # the user's own interpreter: this one may live in a folder only root can enter
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    python = next(
        (p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if os.path.isfile(p)),
        None,
    )
    if python is None:
        pytest.skip(f"no system {version} an unprivileged user can run")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    sentinel = subprocess.Popen(["sleep", "300"], user=account.pw_uid, group=account.pw_gid)
    try:
        port = listener.getsockname()[1]
        args = [str(sentinel.pid), str(host_dir), str(REPO), str(port), "1"]
        done = subprocess.run(
            [python, "-m", "tests.hostile_programs", *args],
            user=account.pw_uid,
            group=account.pw_gid,
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{site}", "HOME": "/tmp"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        found = json.loads(done.stdout.strip().splitlines()[-1])
        _contained(found, host_dir, psutil.Process(sentinel.pid))
        assert _no_connection(listener)
    finally:
        sentinel.kill()
        sentinel.wait()

"""OS-level isolation without root for the code sandbox: bubblewrap, and a pids cgroup.

``bwrap`` (Debian's ``bubblewrap``, installed by ``make setup``) builds the sandbox out of
unprivileged user namespaces: a new user, PID, network, IPC, UTS and cgroup namespace, and
a root file system that holds only the system's programs and libraries (read-only), the
interpreter's prefix (read-only), the boot script, an empty ``/tmp`` and the run's working
folder. ``/etc``, home folders, the host's ``/tmp``, the project and every other process are
not there at all; the network has no interface; all capabilities are dropped; the sandbox
dies with the process that started it.

One hole stays as root: the kernel never applies ``RLIMIT_NPROC`` to uid 0 (and a user
namespace of root maps to uid 0), so a fork bomb is bounded instead by a pids cgroup made for
the run, where the system lets root make one (:func:`pids_cgroup`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

BOOT_INSIDE = "/opt/branchwise/sandbox_boot.py"
_SYSTEM = ("/usr",)
_TOP_LINKS = ("/bin", "/lib", "/lib64", "/sbin", "/lib32", "/libx32")
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def interpreter() -> str:
    """The real interpreter (a virtualenv's python is a link to it; ``-I`` ignores the venv)."""
    return os.path.realpath(sys.executable)


def bwrap_command(workdir: str, boot: Path, env: dict[str, str]) -> list[str]:
    """The ``bwrap`` arguments that start ``python -I boot`` isolated in ``workdir``."""
    found = bwrap_path()
    if found is None:
        raise FileNotFoundError("bwrap")
    command = [found, "--unshare-all", "--die-with-parent", "--new-session"]
    command += ["--cap-drop", "ALL", "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    for folder in _SYSTEM:
        command += ["--ro-bind", folder, folder]
    for link in _TOP_LINKS:
        if os.path.islink(link):
            command += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            command += ["--ro-bind", link, link]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith(tuple(f"{f}/" for f in _SYSTEM)) and prefix not in _SYSTEM:
        command += ["--ro-bind", prefix, prefix]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    command += ["--bind", workdir, workdir, "--chdir", workdir]
    command += ["--ro-bind", str(boot), BOOT_INSIDE]
    return [*command, "--", interpreter(), "-I", BOOT_INSIDE]


@functools.cache
def bwrap_works() -> str | None:
    """None if bubblewrap can build a sandbox here, else why not (one line)."""
    if bwrap_path() is None:
        return "bubblewrap (bwrap) is not installed"
    probe = bwrap_command("/", Path(__file__), {"PATH": "/usr/bin:/bin"})
    probe = [*probe[: probe.index("--bind")], "--", interpreter(), "-I", "-c", "pass"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not start: {exc}"
    if done.returncode != 0:
        words = done.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap cannot make a sandbox here: {words[-1] if words else done.returncode}"
    return None


@contextlib.contextmanager
def pids_cgroup(most: int) -> Iterator[Path | None]:
    """A fresh pids cgroup allowing ``most`` processes (root only), or None where none can be
    made; processes join it through its ``cgroup.procs`` file and it is removed at the end."""
    folder = None
    if os.geteuid() == 0:
        for root in _CGROUP_ROOTS:
            if not (root / "cgroup.procs").is_file():
                continue
            candidate = root / f"branchwise-sandbox-{uuid.uuid4().hex[:12]}"
            try:
                candidate.mkdir()
            except OSError:
                continue
            try:
                (candidate / "pids.max").write_text(str(most))
            except OSError:
                candidate.rmdir()
                continue
            folder = candidate
            break
    try:
        yield folder
    finally:
        if folder is not None:
            _remove_cgroup(folder)


def join_cgroup(folder: Path) -> None:
    """Move the calling process into ``folder`` (run in the child before it execs)."""
    (folder / "cgroup.procs").write_text(str(os.getpid()))


def _remove_cgroup(folder: Path) -> None:
    import signal
    import time

    for _ in range(50):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            folder.rmdir()
            return
        time.sleep(0.02)

"""Child side of the code sandbox: isolate this process, then run the untrusted entry file.

Run by :mod:`verifiers.sandbox` as ``python -I sandbox_boot.py '<json config>'`` in a fresh
process (so no threads, and no state of the host); it imports only the standard library.
Layers, strongest first; each is applied where the system allows and reported to the host:

1. Namespaces (as root): a new mount, network and PID namespace. The whole file system is
   remounted read-only except the working directory; home folders are hidden behind empty
   tmpfs mounts (the interpreter's own prefix is bound back in); ``/proc`` shows only the
   sandbox's processes; the network has no interface at all, so every connection fails.
   When the PID namespace's first process ends, the kernel kills everything left in it.
   Without root, an unprivileged user namespace may still give a network namespace.
2. Resource limits: address space, CPU seconds, file size, open files, no core dumps, and a
   process count (the kernel does not enforce RLIMIT_NPROC for root: as root the audit hook
   below is what stops a fork bomb).
3. A Python audit hook (cannot be removed once installed): no sockets, no new processes, no
   signals to other processes, no ctypes, no writes outside the working directory and no
   reading of other processes' environments. It is Python-level defence in depth; layer 1
   is the one that holds against native code.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
BLOCKED_EVENTS = (
    "socket.",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.spawn",
    "os.exec",
    "os.system",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "subprocess.Popen",
    "ctypes.",
    "os.setuid",
    "os.chroot",
)
SECRET_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers")
WRITE_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree")  # fmt: skip


def main() -> None:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    report = os.fdopen(int(cfg["report_fd"]), "w", buffering=1)
    workdir = str(cfg["workdir"])
    layers: list[str] = []
    if cfg.get("namespaces", True):
        layers.extend(_enter_namespaces(workdir, cfg.get("hide", []), report.fileno()))
    if cfg.get("require_namespaces") and "net_namespace" not in layers:
        report.write(json.dumps({"event": "isolation_failed", "layers": layers}) + "\n")
        os._exit(97)
    _set_limits(cfg["limits"])
    layers.append("rlimits")
    os.chdir(workdir)
    os.umask(0o077)
    if cfg.get("audit_hook", True):
        layers.append("audit_hook")
    report.write(json.dumps({"event": "isolation", "layers": layers}) + "\n")
    os.environ["BRANCHWISE_REPORT_FD"] = str(report.fileno())
    if cfg.get("audit_hook", True):
        _close_process_backdoor()
        sys.addaudithook(_make_hook(workdir))
    sys.argv = [cfg["entry"], *cfg.get("argv", [])]
    sys.path.insert(0, workdir)
    runpy.run_path(cfg["entry"], run_name="__main__")


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _enter_namespaces(workdir: str, hide: list[str], report_fd: int) -> list[str]:
    libc = _libc()
    if os.geteuid() != 0:
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            return ["net_namespace", "user_namespace"]
        return []
    if libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0:
        return []
    layers = ["net_namespace"]
    if _mount(libc, None, "/", MS_REC | MS_PRIVATE) and _read_only_except(libc, workdir, hide):
        layers.append("read_only_fs")
    _fork_and_relay(report_fd)  # the child is PID 1 of the new namespace
    if _mount(libc, "proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "proc"):
        layers.append("pid_namespace")
    # PID 1 ignores signals it has no handler for, even the kernel's SIGXCPU and SIGKILL at
    # the CPU limit: the untrusted code runs as PID 2, and PID 1 only relays its status.
    _fork_and_relay(report_fd)
    return layers


def _mount(libc: Any, source: str | None, target: str, flags: int, fstype: str | None = None,
           data: str | None = None) -> bool:  # fmt: skip
    def enc(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    return int(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data))) == 0


def _read_only_except(libc: Any, workdir: str, hide: list[str]) -> bool:
    """Bind the working directory, hide home folders, then remount every mount read-only."""
    if not _mount(libc, workdir, workdir, MS_BIND | MS_REC):
        return False
    here = os.path.dirname(os.path.realpath(__file__))
    keep = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, here)})
    for folder in hide:
        prefix = folder.rstrip("/") + "/"
        if os.path.isdir(folder) and not workdir.startswith(prefix):
            _hide(libc, folder, [k for k in keep if k.startswith(prefix)], workdir)
    for secret in SECRET_FILES:  # readable to root, and the code runs as root here
        if os.path.isfile(secret):
            _mount(libc, "/dev/null", secret, MS_BIND)
    ok = True
    for target, options in _mounts():
        if target == workdir or target.startswith(("/proc", workdir + "/")):
            continue
        extra = sum(flag for name, flag in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV),
                                            ("noexec", MS_NOEXEC)) if name in options)  # fmt: skip
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | extra
        if not _mount(libc, None, target, flags) and target == "/":
            ok = False
    return ok


def _hide(libc: Any, folder: str, keep: list[str], workdir: str) -> None:
    """Cover ``folder`` with an empty tmpfs, moving the paths in ``keep`` back on top."""
    staged: list[tuple[str, str]] = []
    for index, path in enumerate(keep):
        stage = os.path.join(workdir, f".keep{index}")
        os.makedirs(stage, exist_ok=True)
        if _mount(libc, path, stage, MS_BIND | MS_REC):
            staged.append((stage, path))
    if _mount(libc, "tmpfs", folder, MS_NOSUID | MS_NODEV, "tmpfs", "mode=755,size=1m"):
        for stage, path in staged:
            os.makedirs(path, exist_ok=True)
            _mount(libc, stage, path, MS_MOVE)
    for stage, _ in staged:
        libc.umount2(stage.encode(), 2)  # MNT_DETACH; fails harmlessly once moved away
        os.rmdir(stage)


def _mounts() -> list[tuple[str, str]]:
    out = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            target = fields[4].encode().decode("unicode_escape")
            out.append((target, fields[5]))
    return out


def _fork_and_relay(report_fd: int) -> None:
    """Fork; the parent only waits and ends the way the child ended."""
    pid = os.fork()
    if pid == 0:
        return
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        import signal

        signum = os.WTERMSIG(status)
        os.write(report_fd, (json.dumps({"event": "signal", "signal": signum}) + "\n").encode())
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # ignored when this is PID 1: then exit with 128 + n
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def _close_process_backdoor() -> None:
    """``_posixsubprocess.fork_exec`` forks without an audit event: replace it."""
    import _posixsubprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("sandbox: starting processes is not allowed")

    _posixsubprocess.fork_exec = refuse  # type: ignore[assignment]


def _set_limits(limits: dict[str, int]) -> None:
    mib = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # RLIMIT_NPROC counts every process of the real user, not only ours.
    processes = limits["processes"] + (_processes_of(os.getuid()) if os.getuid() else 0)
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as handle:
                    uids = next(line for line in handle if line.startswith("Uid:"))
            except (OSError, StopIteration):
                continue
            count += int(uids.split()[1]) == uid
    return count


def _make_hook(workdir: str) -> Any:
    root = workdir.rstrip("/") + "/"
    own_proc = (f"/proc/{os.getpid()}/", "/proc/self/", "/proc/thread-self/")

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor: its opening was checked
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False
        full = os.path.normpath(os.path.join(workdir, path))
        return full == workdir or full.startswith(root) or full == "/dev/null"

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(BLOCKED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args:
            path, mode, flags = [*args, None, None][:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} is not allowed")
            environ = isinstance(path, str) and path.startswith("/proc/") and "environ" in path
            if environ and not str(path).startswith(own_proc):
                raise PermissionError(f"sandbox: reading {path!r} is not allowed")
        if event in WRITE_EVENTS and args and not inside(args[0]):
            raise PermissionError(f"sandbox: {event} on {args[0]!r} is not allowed")

    return hook


if __name__ == "__main__":
    main()

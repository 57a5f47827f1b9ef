"""Run untrusted Python in a separate, limited process (host side).

Each run gets a throw-away working directory, a scrubbed environment (no variable of the host
survives, so no secrets), a wall-clock limit enforced here, and the isolation layers that
:mod:`verifiers.sandbox_boot` applies inside the child (namespaces where the system allows,
resource limits, an audit hook). The child starts its own session, and its whole process
group is killed when the run ends, however it ends.

Code runs isolated by the operating system or not at all (``SandboxLimits.isolation``):

- ``auto`` (the default): bubblewrap where it works (:mod:`verifiers.sandbox_bwrap`; no root
  needed), else, as root, the boot's own namespaces; else the run is refused in one line that
  says how to get isolation (:func:`check_isolation`);
- ``bubblewrap`` or ``namespaces``: that one, or refuse;
- ``none``: resource limits and the audit hook only, which code can get around (it can signal
  the evaluating process, write where the user can, start processes); it needs saying in the
  recipe and logs a warning.

``SandboxResult.layers`` says what was applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from branchwise.core.errors import RecipeError
from branchwise.verifiers.sandbox_bwrap import bwrap_command, bwrap_works, join_cgroup, pids_cgroup

BOOT = Path(__file__).with_name("sandbox_boot.py")
_BOOT_EVENTS = ("isolation", "isolation_failed", "signal")
Verdict = Literal["ok", "exit_code", "timeout", "cpu_limit", "killed", "isolation_failed"]
Isolation = Literal["auto", "bubblewrap", "namespaces", "none"]
log = logging.getLogger(__name__)
_warned_no_isolation = False


class SandboxLimits(BaseModel):
    """What one sandboxed run may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_seconds: float = Field(10.0, gt=0, description="Wall-clock limit; then the group dies.")
    cpu_seconds: int = Field(5, ge=1, description="CPU seconds per process (RLIMIT_CPU).")
    memory_mb: int = Field(512, ge=64, description="Address space per process (RLIMIT_AS).")
    processes: int = Field(
        16, ge=1, description="Extra processes allowed (RLIMIT_NPROC; not enforced for root)."
    )
    file_size_mb: int = Field(16, ge=1, description="Largest file it may write (RLIMIT_FSIZE).")
    open_files: int = Field(64, ge=16, description="Open descriptors (RLIMIT_NOFILE).")
    output_bytes: int = Field(65536, ge=1024, description="Stdout/stderr kept; the rest dropped.")
    isolation: Isolation = Field(
        "auto",
        description="auto or bubblewrap: bubblewrap, else refuse; namespaces (root only): the "
        "kernel's mount, PID and network namespaces, which hide home folders and secrets but "
        "leave the host's /tmp readable; none: resource limits and an audit hook only (code "
        "can get around them; logs a warning).",
    )
    namespaces: bool = Field(
        True, description="isolation namespaces: use Linux namespaces where the system allows."
    )
    require_namespaces: bool = Field(
        False, description="Refuse to run untrusted code without a network namespace."
    )
    audit_hook: bool = Field(
        True, description="Python-level guard (sockets, processes, writes); off only in tests."
    )
    hide: tuple[str, ...] = Field(
        ("/root", "/home"), description="Folders hidden behind empty mounts (as root)."
    )


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended, what it printed and what it reported on the report channel."""

    verdict: Verdict
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    layers: tuple[str, ...] = ()
    reports: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def scrubbed_env(workdir: str) -> dict[str, str]:
    """The child's whole environment: nothing inherited from the host."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def check_isolation(limits: SandboxLimits) -> str:
    """The isolation a run gets here: bubblewrap, namespaces or none; RecipeError (one line,
    saying how to get isolation) when the one asked for cannot be had."""
    global _warned_no_isolation
    wanted = limits.isolation
    if wanted == "none":
        if not _warned_no_isolation:
            _warned_no_isolation = True
            log.warning(
                "sandbox isolation: none; candidate code runs with resource limits and an "
                "audit hook only, which it can get around (it can signal this process, write "
                "where this user can, start processes)"
            )
        return "none"
    why = bwrap_works() if wanted in ("auto", "bubblewrap") else "not asked for"
    if why is None:
        return "bubblewrap"
    # Only bubblewrap is chosen by `auto`: the hostile-program suite holds under it. The
    # root-only namespaces layer must be asked for, since the host's /tmp stays readable there.
    if wanted == "namespaces" and os.geteuid() == 0:
        return "namespaces"
    raise RecipeError(
        f"sandbox isolation {wanted}: {why}"
        + ("" if os.geteuid() == 0 else ", and namespaces of its own need root")
        + "; install bubblewrap (`make setup`, or `apt-get install bubblewrap`), or set "
        "`isolation: none` in the scorer's limits to run code with resource limits only"
    )


async def run_python(
    files: dict[str, str],
    entry: str,
    limits: SandboxLimits | None = None,
    *,
    stdin: str = "",
    argv: tuple[str, ...] = (),
) -> SandboxResult:
    """Write ``files`` into a fresh folder and run ``entry`` there under ``limits``."""
    limits = limits or SandboxLimits()
    mode = check_isolation(limits)
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="bw-sandbox-"))
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    process: asyncio.subprocess.Process | None = None
    stack = contextlib.ExitStack()
    try:
        for name, text in files.items():
            target = Path(workdir, name)
            if not target.resolve().is_relative_to(workdir):
                raise ValueError(f"sandbox file {name!r} escapes the working directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        config = {
            "workdir": workdir,
            "entry": entry,
            "argv": list(argv),
            "report_fd": write_fd,
            "namespaces": mode == "namespaces" and limits.namespaces,
            "require_namespaces": limits.require_namespaces,
            "hide": list(limits.hide),
            "audit_hook": limits.audit_hook,
            "limits": limits.model_dump(
                include={"cpu_seconds", "memory_mb", "processes", "file_size_mb", "open_files"}
            ),
        }
        env = scrubbed_env(workdir)
        if mode == "bubblewrap":
            command = bwrap_command(workdir, BOOT, env)
        else:
            command = [sys.executable, "-I", str(BOOT)]
        cgroup = None
        if mode != "none":  # as root RLIMIT_NPROC does not bind: a pids cgroup does
            cgroup = stack.enter_context(pids_cgroup(limits.processes + 4))
        host_layers: tuple[str, ...] = ("bubblewrap",) if mode == "bubblewrap" else ()
        host_layers += ("pids_cgroup",) if cgroup is not None else ()
        process = await asyncio.create_subprocess_exec(
            *command,
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            pass_fds=(write_fd,),
            preexec_fn=(lambda: join_cgroup(cgroup)) if cgroup is not None else None,
        )
        os.close(write_fd)
        write_fd = -1
        report_task = asyncio.ensure_future(_read_capped_fd(read_fd, 4 * 1024 * 1024))
        read_fd = -1  # owned by the reader now
        verdict, out, err = await _communicate(process, stdin, limits)
        code = process.returncode
        reports = _parse_reports(await report_task)
        signals = [r["signal"] for r in reports if r.get("event") == "signal"]
        if signals and isinstance(signals[0], int):
            code = -signals[0]  # the first relay saw how the untrusted process really ended
        elif mode == "bubblewrap" and code is not None and 128 < code <= 128 + 64:
            code = 128 - code  # bwrap ends with 128 + n when the code was killed by signal n
        if verdict == "ok" and code is not None and code != 0:
            verdict = _verdict_of(code)
        layers = host_layers + next((tuple(r["layers"]) for r in reports if "layers" in r), ())
        return SandboxResult(
            verdict=verdict,
            exit_code=code,
            stdout=out,
            stderr=err,
            seconds=time.monotonic() - started,
            layers=layers,
            reports=tuple(r for r in reports if r.get("event") not in _BOOT_EVENTS),
        )
    finally:
        if process is not None:
            _kill_group(process.pid)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        stack.close()  # the run's cgroup: what is left in it is killed, then it is removed
        for fd in (read_fd, write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


async def _communicate(
    process: asyncio.subprocess.Process, stdin: str, limits: SandboxLimits
) -> tuple[Verdict, str, str]:
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(stdin.encode())
        await process.stdin.drain()
        process.stdin.close()
    out_task = asyncio.ensure_future(_read_capped(process.stdout, limits.output_bytes))
    err_task = asyncio.ensure_future(_read_capped(process.stderr, limits.output_bytes))
    verdict: Verdict = "ok"
    try:
        async with asyncio.timeout(limits.wall_seconds):
            await process.wait()
    except TimeoutError:
        verdict = "timeout"
    _kill_group(process.pid)  # orphans holding the pipes open must not outlive the run
    out, err = await asyncio.gather(out_task, err_task)
    await process.wait()
    return verdict, out, err


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> str:
    """Read to the end, keeping the first ``cap`` bytes (draining the rest keeps it moving)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept.extend(chunk[: cap - len(kept)])
    return kept.decode("utf-8", errors="replace")


def _verdict_of(code: int) -> Verdict:
    if code == 97:
        return "isolation_failed"
    if code == -signal.SIGXCPU:
        return "cpu_limit"
    return "killed" if code < 0 else "exit_code"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _read_capped_fd(fd: int, cap: int) -> str:
    """Drain the report pipe while the child runs, so a chatty child never blocks on it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return await _read_capped(reader, cap)
    finally:
        transport.close()


def _parse_reports(text: str) -> list[dict[str, Any]]:
    """Lines the child wrote on its report channel; lines that are not JSON objects are skipped."""
    reports = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                reports.append(item)
    return reports

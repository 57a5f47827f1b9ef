"""Hostile candidate programs for the code sandbox, and what each one managed to do.

Run in-process by ``tests/unit/test_sandbox_hostile.py`` (as root) and, through
``python -m tests.hostile_programs``, as an unprivileged user the test creates. Each program
tries one escape (the ones a probe of the sandbox found, and the usual ones) and prints
what it got; the host side then looks at what really happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from branchwise.verifiers.sandbox import SandboxLimits, run_python

# Put `_posixsubprocess` back after the sandbox replaced its process starter (the bypass a
# probe found), so processes start again as far as Python goes.
BYPASS = "import sys\nsys.modules.pop('_posixsubprocess', None)\nimport _posixsubprocess\n"


def _try(name: str, code: str) -> str:
    body = "\n".join("    " + line for line in code.strip().splitlines())
    return (
        f"try:\n{body}\n    print({name!r}, 'DONE')\n"
        f"except BaseException as exc:\n    print({name!r}, 'refused', type(exc).__name__)\n"
    )


def programs(sentinel: int, host_dir: str, project: str, port: int) -> dict[str, str]:
    """name -> program; each prints ``name DONE`` when its attempt went through inside."""
    signal_parent = "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)"
    return {
        "kill_parent": _try("kill_parent", signal_parent),
        "kill_sentinel": _try("kill_sentinel", f"import os\nos.kill({sentinel}, 9)"),
        "prlimit_sentinel": _try(
            "prlimit_sentinel",
            f"import resource\nresource.prlimit({sentinel}, resource.RLIMIT_NOFILE, (3, 3))",
        ),
        "sqlite_outside": _try(
            "sqlite_outside",
            f"import sqlite3\ndb = sqlite3.connect({host_dir + '/escaped.db'!r})\n"
            "db.execute('create table t (x)')",
        ),
        "mkfifo_outside": _try("mkfifo_outside", f"import os\nos.mkfifo({host_dir + '/fifo'!r})"),
        "append_project": _try(
            "append_project", f"open({project + '/README.md'!r}, 'a').write('pwned')"
        ),
        "read_shadow": _try("read_shadow", "print(open('/etc/shadow').read()[:1])"),
        "read_host_tmp": _try("read_host_tmp", f"print(open({host_dir + '/secret'!r}).read())"),
        "read_project": _try("read_project", f"print(open({project + '/README.md'!r}).read(9))"),
        "spawn_shell": BYPASS
        + _try(
            "spawn_shell",
            "import subprocess\nsubprocess.run(['/bin/sh', '-c', "
            f"'echo pwned > {host_dir}/from_shell'], check=True)",
        ),
        "connect_host": BYPASS
        + _try(
            "connect_host",
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        ),
        "fork_bomb": BYPASS
        + _try(
            "fork_bomb",
            "import subprocess\nkids = []\nfor _ in range(200):\n"
            "    kids.append(subprocess.Popen(['/bin/sleep', '30']))\n"
            "print('started', len(kids))",
        ),
        "memory": _try("memory", "blob = bytearray(8 * 1024 ** 3)"),
        "big_file": _try("big_file", "open('big', 'wb').write(b'x' * (200 * 1024 ** 2))"),
    }


def run_all(
    sentinel: int, host_dir: str, project: str, port: int, *, audit_hook: bool
) -> dict[str, Any]:
    """Run every program; name -> (stdout, verdict, layers)."""
    limits = SandboxLimits(wall_seconds=10.0, cpu_seconds=5, memory_mb=512, audit_hook=audit_hook)

    async def one(code: str) -> tuple[str, str, list[str]]:
        result = await run_python({"main.py": code}, "main.py", limits)
        return result.stdout + result.stderr[-300:], result.verdict, list(result.layers)

    async def every() -> dict[str, Any]:
        found = {}
        for name, code in programs(sentinel, host_dir, project, port).items():
            found[name] = await one(code)
        return found

    return asyncio.run(every())


if __name__ == "__main__":
    sentinel, host_dir, project, port, hook = sys.argv[1:6]
    print(json.dumps(run_all(int(sentinel), host_dir, project, int(port), audit_hook=hook == "1")))
    sys.stdout.flush()
    os._exit(0)

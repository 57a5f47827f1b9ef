"""A Session keeps one engine up across sync and async calls, and closes it for sure."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from branchwise.core.errors import BranchwiseError
from branchwise.orchestrator.engine_log import engine_output_to_file
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.recipe import load_recipe
from branchwise.orchestrator.session import Session
from tests.conftest import REPO

SOLUTIONS = REPO / "examples/testbed/data/eval.jsonl"
RECIPE_TEXT = f"""
engine: {{kind: scripted, error_rate: 0.0, solutions: {SOLUTIONS}}}
strategy: {{name: self_consistency, n: 4}}
sampling: {{max_tokens: 200}}
step_delimiter: "\\n\\n"
answer: {{method: boxed}}
"""
QUESTION = "Pam has 10 apples. She halves them. She gives away 4. She doubles them. She loses 2. How many apples now?"  # noqa: E501


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "scripted.yaml"
    path.write_text(RECIPE_TEXT)
    return path


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"enter": 0, "exit": 0}
    enter, leave = ScriptedEngine.__aenter__, ScriptedEngine.__aexit__

    async def counted_enter(self: ScriptedEngine) -> ScriptedEngine:
        counts["enter"] += 1
        return await enter(self)

    async def counted_exit(self: ScriptedEngine, *args: Any) -> None:
        counts["exit"] += 1
        await leave(self, *args)

    monkeypatch.setattr(ScriptedEngine, "__aenter__", counted_enter)
    monkeypatch.setattr(ScriptedEngine, "__aexit__", counted_exit)
    return counts


def test_one_engine_serves_every_sync_call_and_stops_at_the_end_of_with(
    recipe: Path, starts: dict[str, int]
) -> None:
    with Session(recipe) as session:
        first = session.search(QUESTION)
        more = session.map([QUESTION, "Zed has 3 cards. He doubles them. How many cards now?"])
        again = session.search(QUESTION)
        assert starts == {"enter": 1, "exit": 0}
    assert starts == {"enter": 1, "exit": 1}
    assert first.answer == "0" and more[0].answer == "0" and again.answer == "0"
    assert [r.problem_id for r in more] == ["q0", "q1"]
    assert session.closed
    with pytest.raises(BranchwiseError, match="closed"):
        session.search(QUESTION)
    session.close()  # idempotent


def test_async_calls_share_the_engine_from_any_loop(recipe: Path, starts: dict[str, int]) -> None:
    async def main() -> list[str | None]:
        async with Session(recipe) as session:
            one = await session.asearch(QUESTION)
            both = await asyncio.gather(session.amap([QUESTION]), session.asearch(QUESTION))
            # a sync call from inside a running loop (a notebook cell) works too
            three = session.search(QUESTION)
            return [one.answer, both[0][0].answer, both[1].answer, three.answer]

    assert asyncio.run(main()) == ["0", "0", "0", "0"]
    assert starts == {"enter": 1, "exit": 1}


def test_results_carry_warnings_and_the_recipe_is_read_once(recipe: Path) -> None:
    tight = load_recipe(recipe, overrides={"budget": {"max_generated_tokens": 8}})
    with Session(tight) as session:
        result = session.search(QUESTION)
    assert result.answer is None and [w.kind for w in result.warnings] == ["budget_ran_out"]


def test_a_session_left_open_stops_its_engine_at_exit(recipe: Path, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from branchwise.orchestrator.engines.scripted import ScriptedEngine
        from branchwise import Session

        async def leave(self, *args):
            Path({str(marker)!r}).write_text("closed")

        ScriptedEngine.__aexit__ = leave
        session = Session({str(recipe)!r})
        print(session.search({QUESTION!r}).answer)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0" and marker.read_text() == "closed"


def test_a_vllm_recipe_logs_its_engine_to_a_file_by_default() -> None:
    demo = load_recipe(REPO / "examples/recipes/demo.yaml")
    assert Session(demo).log_path is not None
    assert Session(demo, engine_log=None).log_path is None


def test_engine_output_goes_to_the_file_while_the_engine_starts(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    script = textwrap.dedent(
        f"""
        import os, subprocess
        from pathlib import Path
        from branchwise.orchestrator.engine_log import engine_output_to_file

        with engine_output_to_file(Path({str(log)!r})):
            print("in-process noise", flush=True)
            subprocess.run(["echo", "child noise"], check=True)
            assert os.environ["VLLM_LOGGING_CONFIG_PATH"].endswith(".logging.json")
        assert "VLLM_LOGGING_CONFIG_PATH" not in os.environ
        print("after")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "VLLM_LOGGING_CONFIG_PATH"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "after\n"
    assert log.read_text() == "in-process noise\nchild noise\n"
    with engine_output_to_file(None):  # None leaves the output alone
        pass

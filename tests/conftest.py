"""Shared fixtures: scripted problems for unit tests, recipes built in code."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from branchwise.core.problem import Problem
from branchwise.orchestrator.recipe import Recipe, parse_recipe

REPO = Path(__file__).resolve().parent.parent


def make_problem(index: int, steps: int = 3, seed: int = 0) -> Problem:
    """A chain-arithmetic problem with its reference solution (one step per line)."""
    rng = random.Random(seed * 100_003 + index)
    value = rng.randint(2, 9)
    words, lines = [f"Start with {value}."], []
    for _ in range(steps):
        op, operand = rng.choice("+*-"), rng.randint(2, 9)
        if op == "-" and operand > value:
            op = "+"
        result = {"+": value + operand, "*": value * operand, "-": value - operand}[op]
        words.append({"+": "Add", "*": "Multiply by", "-": "Subtract"}[op] + f" {operand}.")
        lines.append(f"{value}{op}{operand}={result}")
        value = result
    lines.append(f"Answer: {value}")
    return Problem(
        id=f"p{index}",
        question=" ".join(words),
        reference=str(value),
        solution="\n".join(lines),
    )


TESTBED_POLICY = REPO / "examples" / "testbed" / "models" / "policy"


@pytest.fixture(scope="session")
def testbed_tokenizer() -> Any:
    """The testbed policy's byte-level BPE tokenizer (it merges ".\\n\\n" into one token)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TESTBED_POLICY), local_files_only=True)


@pytest.fixture
def problems() -> list[Problem]:
    return [make_problem(i) for i in range(12)]


def scripted_recipe(strategy: dict[str, Any], **extra: Any) -> Recipe:
    data: dict[str, Any] = {
        "engine": {"kind": "scripted", "error_rate": extra.pop("error_rate", 0.3)},
        "strategy": strategy,
        "sampling": {"temperature": 1.0, "max_tokens": 64},
        "seed": extra.pop("seed", 0),
    }
    data.update(extra)
    return parse_recipe(data)


def teach(engine: object, problems: Iterable[Problem]) -> None:
    """Give a scripted engine the problems' reference solutions (its ``learn`` hook).

    Set up by the tests, never by the runner: the production path hands no engine a solution.
    """
    learn = getattr(engine, "learn", None)
    if learn is not None:
        learn({p.question: p.solution for p in problems if p.solution is not None})


# The layers are installed under one import name; a test that imported `core.graph` or
# `strategies.base` would load a second copy of a module (two `Node` classes, two registries).
_OLD_TOP_LEVEL_NAMES = ("core", "orchestrator", "strategies", "verifiers", "rewards")


# The system tier: tests that start other processes (the CLI, fresh interpreters, sandboxes,
# Ray, servers, browsers), build wheels, train models or repeat statistical comparisons with
# the reference libraries. They run in `make test` and `make system`; the unit tier
# (`make unit`) is the rest, in-process on the scripted engine.
SYSTEM_FILES = (
    "tests/equivalence/",
    "tests/testbed/test_training.py",
    "tests/testbed/test_train_reasoning.py",
    "tests/integration/test_installed_wheel.py",
    "tests/unit/test_ray_executor.py",
    "tests/unit/test_sandbox_hostile.py",
    "tests/unit/test_code_execution.py",
    "tests/unit/test_watchdog.py",
    "tests/unit/test_storage_faults.py",
    "tests/unit/test_pages.py",
    "tests/unit/test_layers.py::test_every_module_imports_on_its_own_in_a_fresh_process",
    "tests/unit/test_server.py::test_branchwise_serve_runs_the_command_end_to_end",
    "tests/unit/test_server_edges.py::test_serve_without_a_key_says_so_on_start",
    "tests/unit/test_readme.py::test_the_readme_server_commands_and_clients_run",
    "tests/unit/test_readme.py::test_every_readme_branchwise_command_runs_as_written",
    "tests/unit/test_cli_and_store.py::test_two_writers_on_one_store_share_the_problems",
    "tests/unit/test_cli_and_store.py::test_sigkill_mid_run_then_resume_stores_each_problem_once",
    "tests/unit/test_cli_and_store.py::test_a_terminal_gets_a_progress_bar",
    "tests/unit/test_plugins.py::test_the_cli_lists_plugin_strategies_and_scorers",
    "tests/unit/test_session.py::test_engine_output_goes_to_the_file_while_the_engine_starts",
    "tests/unit/test_session.py::test_a_session_left_open_stops_its_engine_at_exit",
    "tests/unit/test_cli_small_edges.py::test_a_closed_stdout_ends_quietly_with_the_sigpipe_code",
    "tests/unit/test_import_graph.py::test_the_check_finds_a_planted_circle",
    "tests/unit/test_edges.py::test_the_strategy_registry_imports_on_its_own",
    "tests/unit/test_fuzz_edges.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SYSTEM_FILES):
            item.add_marker(pytest.mark.system)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import sys

    loaded = sorted(n for n in sys.modules if n.split(".")[0] in _OLD_TOP_LEVEL_NAMES)
    if loaded:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nerror: modules imported outside `branchwise`: {loaded[:10]}", file=sys.stderr)

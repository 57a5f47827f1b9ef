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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import sys

    loaded = sorted(n for n in sys.modules if n.split(".")[0] in _OLD_TOP_LEVEL_NAMES)
    if loaded:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nerror: modules imported outside `branchwise`: {loaded[:10]}", file=sys.stderr)

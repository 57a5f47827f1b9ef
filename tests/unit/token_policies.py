"""Token-level scripted policies for tests of exact samplers (their distributions are known)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from branchwise.core.problem import Problem
from branchwise.orchestrator.engines.scripted import EOS, ScriptedEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator


class TrapPolicy:
    """A first token whose likelier option leads to an uncertain future.

    After the prompt (its first line): ``A`` (p = 0.4), then ``7`` for sure; or ``B``
    (p = 0.6), then two digits each uniform over 0-4. The answer is 7 only after ``A``, so
    plain sampling is right 40% of the time, low temperature less often (it sharpens the first
    token toward ``B``), while p^alpha puts nearly all its mass on ``A7``: 0.4^alpha against
    25 futures of (0.6 / 25)^alpha each.
    """

    def next_token_logprobs(self, text: str) -> Mapping[str, float]:
        written = text.split("\n", 1)[1] if "\n" in text else ""
        if not written:
            return {"A": math.log(0.4), "B": math.log(0.6)}
        if written[0] == "A":
            return {"7": 0.0} if len(written) == 1 else {EOS: 0.0}
        if len(written) < 3:
            return {d: math.log(0.2) for d in "01234"}
        return {EOS: 0.0}


def trap_problems(count: int) -> list[Problem]:
    return [
        Problem(id=f"t{i}", question=f"Trap number {i}.", reference="7", solution=None)
        for i in range(count)
    ]


def run_on(
    engine: ScriptedEngine,
    strategy: dict[str, Any],
    problems: list[Problem],
    *,
    max_tokens: int = 32,
    seed: int = 0,
) -> list[ProblemResult]:
    """Run ``strategy`` on ``problems`` with a token-level engine; answers are last numbers."""
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": strategy,
            "sampling": {"temperature": 1.0, "max_tokens": max_tokens},
            "answer": {"method": "last_number"},
            "seed": seed,
        }
    )

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go())

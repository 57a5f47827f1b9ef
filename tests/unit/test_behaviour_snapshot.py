"""Refactors change no behaviour: every strategy's graphs, answers and token counts are pinned.

``behaviour_snapshot.json`` was recorded on the scripted engine before the search kernel was
rebuilt (one entry per contract config, plus the score-aggregation variants that the kernel's
single score -> value rule replaced). Each entry holds the answer, the answer node, the usage
counts and a digest of the whole graph (ids, parents, token ids, text, status, answers,
score values) for a few problems. A change of behaviour fails here with the first entry that
moved; a deliberate one re-records with ``BRANCHWISE_RECORD_SNAPSHOT=1`` and says why in the
commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from branchwise.core.graph import Score, SearchGraph
from branchwise.core.problem import Problem
from branchwise.core.scorers import SCORERS, Candidate, Scorer
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, teach
from tests.unit.strategy_configs import CONTRACT_SCORERS, STRATEGY_CONFIGS, recipe_extras

SNAPSHOT = Path(__file__).with_name("behaviour_snapshot.json")
USAGE_FIELDS = (
    "generated_tokens",
    "prompt_tokens",
    "cached_prompt_tokens",
    "engine_calls",
    "scorer_calls",
    "scorer_cache_hits",
    "nodes",
    "aborted_requests",
)


class HashedSteps(Scorer):
    """Continuous step values in [0, 1] from a hash of each step (test-only, deterministic).

    Its ``value`` is the steps' maximum, a rule no strategy aggregates by, so a snapshot
    shows whether a strategy read ``value`` or folded ``step_values`` itself.
    """

    description = "Test-only: deterministic continuous step values from a hash."
    step_level = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        scores = []
        for c in candidates:
            values = tuple(
                int(hashlib.sha256(f"{problem.id}|{i}|{step}".encode()).hexdigest()[:8], 16)
                / 0xFFFFFFFF
                for i, step in enumerate(c.steps)
            )
            scores.append(Score(value=max(values) if values else None, step_values=values))
        return scores


if "snapshot_hashed_steps" not in SCORERS.names():
    SCORERS.register("snapshot_hashed_steps", HashedSteps)
SCORERS_USED = [*CONTRACT_SCORERS, {"kind": "snapshot_hashed_steps", "name": "hashed"}]


def _variants() -> dict[str, dict[str, Any]]:
    """The contract configs, plus each way a scorer's step values become one value."""
    configs = dict(STRATEGY_CONFIGS)
    for name, config in STRATEGY_CONFIGS.items():
        if config.get("scorer") != "prm":
            continue
        for aggregation in ("min", "last", "product", "mean"):
            configs[f"{name}_hashed_{aggregation}"] = {
                **config,
                "scorer": "hashed",
                "aggregation": aggregation,
            }
    for aggregation in ("min", "last", "product", "mean"):
        configs[f"self_consistency_weighted_{aggregation}"] = {
            "name": "self_consistency",
            "n": 6,
            "scorer": "hashed",
            "aggregation": aggregation,
        }
        configs[f"entropy_branching_hashed_{aggregation}"] = {
            **STRATEGY_CONFIGS["entropy_branching"],
            "selection": "scorer",
            "scorer": "hashed",
            "aggregation": aggregation,
        }
    return configs


VARIANTS = _variants()


def graph_digest(graph: SearchGraph) -> str:
    rows = []
    for node in sorted(graph.nodes(), key=lambda n: n.id):
        state = graph.state(node.id)
        rows.append(
            [
                node.id,
                node.parent_id,
                list(node.token_ids),
                node.text,
                node.terminal,
                node.answer,
                node.finish_reason,
                node.forced,
                state.status,
                {
                    name: [score.value, list(score.step_values), score.error is not None]
                    for name, score in sorted(state.scores.items())
                },
            ]
        )
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def observe(name: str) -> list[dict[str, Any]]:
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": VARIANTS[name],
            **recipe_extras(VARIANTS[name]),
            "scorers": SCORERS_USED,
            "sampling": {"temperature": 1.0, "max_tokens": 48},
            "seed": 3,
        }
    )
    problems = [make_problem(i, seed=5) for i in range(3)]
    engine = ScriptedEngine(error_rate=0.25)
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return [observation(result) for result in asyncio.run(go())]


def observation(result: ProblemResult) -> dict[str, Any]:
    """What the snapshot pins of one search: answer, answer node, usage, graph digest."""
    assert result.graph is not None and result.error is None, result.error
    return {
        "answer": result.answer,
        "node": result.node_id,
        "usage": {f: int(result.usage[f]) for f in USAGE_FIELDS},
        "graph": graph_digest(result.graph),
        "size": len(result.graph),
    }


def test_the_snapshot_covers_every_variant() -> None:
    if os.environ.get("BRANCHWISE_RECORD_SNAPSHOT"):
        SNAPSHOT.write_text(
            json.dumps({name: observe(name) for name in sorted(VARIANTS)}, indent=1) + "\n"
        )
    recorded = json.loads(SNAPSHOT.read_text())
    assert sorted(recorded) == sorted(VARIANTS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_same_graphs_answers_and_tokens_as_recorded(name: str) -> None:
    recorded = json.loads(SNAPSHOT.read_text())[name]
    assert observe(name) == recorded

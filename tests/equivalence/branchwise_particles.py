"""The Branchwise side of the particle equivalence tests: the real strategy on the scripted
engine, scored by a PRM that reads the path the way scripted_paths.py describes it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import SCORERS, Candidate, Scorer, ScorerConfig
from tests.conftest import make_problem
from tests.equivalence.scripted_paths import DEPTH, outcome, path_score
from tests.unit.step_helpers import run_strategy


def path_states(problem: Problem, steps: Sequence[str]) -> list[str]:
    """Each step's abstract state: "ok" until the first line off the reference, then "offK"."""
    assert problem.solution is not None
    reference = problem.solution.strip().split("\n")
    states: list[str] = []
    for line, ref in zip(steps, reference, strict=False):
        if states and states[-1] != "ok":
            states.append(states[-1])
        elif line.strip() == ref.strip():
            states.append("ok")
        else:
            states.append(f"off{_last_number(line.strip()) - _last_number(ref.strip())}")
    return states


def _last_number(line: str) -> int:
    digits = line.rstrip(".").split("=")[-1].split()[-1]
    return int(digits)


class ScriptedPathConfig(ScorerConfig):
    pass


class ScriptedPathPRM(Scorer):
    """Test-only: scripted_paths.path_score of the path's abstract states, at every step."""

    config_model = ScriptedPathConfig
    description = "Test-only: the particle equivalence tests' PRM."
    step_level = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        out = []
        for c in candidates:
            states = path_states(problem, c.steps)
            values = tuple(path_score(states[: i + 1]) for i in range(len(states)))
            out.append(Score(value=values[-1] if values else None, step_values=values))
        return out


if "scripted_path_prm" not in SCORERS.names():
    SCORERS.register("scripted_path_prm", ScriptedPathPRM)


def particle_stats(strategy: dict[str, Any], error_rate: float, seeds: int) -> dict[str, Any]:
    """Survivor counts after each resampling (steps 1..DEPTH-1), the free particles drawing
    the reference (particle Gibbs), final choices by outcome."""
    problems = [make_problem(i, steps=DEPTH - 1) for i in range(seeds)]
    results, engine = run_strategy(
        {"scorer": "prm", **strategy},
        problems,
        scorers=[{"kind": "scripted_path_prm", "name": "prm"}],
        error_rate=error_rate,
        max_tokens=64,
    )
    by_id = {p.id: p for p in problems}
    graphs = {r.problem_id: r.graph for r in results}
    survivors: Counter[str] = Counter()
    references: Counter[str] = Counter()
    counts: dict[tuple[str, int, int], int] = {}
    copies: dict[tuple[str, int, int], int] = {}
    sweeps: Counter[str] = Counter()
    fresh: dict[str, set[str]] = {}  # the nodes the current sweep made, by problem
    for request in engine.requests:
        _, problem_id, child = request.request_id.rsplit(":", 2)
        first, count = child.split("x")
        parent_id, start = first.rsplit(".", 1)
        made = {f"{parent_id}.{int(start) + k}" for k in range(int(count))}
        graph = graphs[problem_id]
        assert graph is not None
        path = graph.path(parent_id)[1:]
        if not path:  # a sweep starts at the root
            sweeps[problem_id] += 1
            fresh[problem_id] = made
            continue
        states = path_states(by_id[problem_id], [n.text for n in path])
        key = (problem_id, sweeps[problem_id], len(path))
        counts[key] = counts.get(key, 0) + (request.n if outcome(states) == "ok" else 0)
        # a parent the sweep did not make is the reference's own prefix
        from_reference = parent_id not in fresh[problem_id]
        copies[key] = copies.get(key, 0) + (request.n if from_reference else 0)
        fresh[problem_id] |= made
    for (problem_id, sweep, step), on_track in counts.items():
        survivors[f"{step}:{on_track}"] += 1
        if sweep > 1:
            references[f"{step}:{copies[(problem_id, sweep, step)]}"] += 1
    chosen: Counter[str] = Counter()
    for result in results:
        problem = by_id[result.problem_id]
        assert result.error is None and result.answer is not None, result.error
        offset = int(result.answer) - int(problem.reference or 0)
        chosen["ok" if offset == 0 else f"off{offset}"] += 1
    return {"survivors": dict(survivors), "references": dict(references), "chosen": dict(chosen)}

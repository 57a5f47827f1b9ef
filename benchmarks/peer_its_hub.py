"""The its_hub arm of ``benchmarks/peers.py``; runs in its own virtual environment.

Reads a job (JSON file: server, problems, strategy, budget, step settings) and writes the
final response text of every problem with the wall and CPU seconds the batch took. Problems
run ``concurrency`` at a time, each through its_hub's own algorithm at its defaults except
what the job sets to match Branchwise (temperature, step delimiter, token caps). The step
scorer is the testbed's exact checker from this repository, the same one Branchwise uses.

    <peer venv>/bin/python benchmarks/peer_its_hub.py job.json out.json
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from its_hub.api import AbstractProcessRewardModel  # noqa: E402
from its_hub.core.algorithms.beam_search import BeamSearch  # noqa: E402
from its_hub.core.algorithms.particle_gibbs import ParticleFiltering  # noqa: E402
from its_hub.core.algorithms.self_consistency import SelfConsistency  # noqa: E402
from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel  # noqa: E402
from its_hub.core.lms.step_generation import StepGeneration  # noqa: E402

from branchwise.core.answer_spec import AnswerSpec  # noqa: E402
from branchwise.core.problem import Problem  # noqa: E402
from branchwise.core.scorers import Candidate, ScorerConfig, ScorerResources  # noqa: E402
from branchwise.orchestrator.steps import split_steps  # noqa: E402
from branchwise.verifiers.answers import extract_answer  # noqa: E402


class OraclePRM(AbstractProcessRewardModel):  # type: ignore[misc]  # its_hub: untyped here
    """The Branchwise scorer the job names, read at a path's last step (aggregation: last)."""

    def __init__(self, scorer_path: str, kind: str, problems: dict[str, Problem], step: str):
        module, attr = scorer_path.split(":")
        cls = getattr(importlib.import_module(module), attr)
        self.scorer = cls(ScorerConfig(kind=kind), ScorerResources(base_dir=ROOT))
        self.problems = problems
        self.step = step

    def score(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
        return asyncio.run(self.ascore(prompt_or_messages, steps))

    async def ascore(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
        problem = self.problems[_question(prompt_or_messages)]
        candidates = [
            Candidate(
                node_id=str(i),
                prompt=problem.question,
                steps=split_steps(text, self.step),
                answer=None,
                terminal=False,
            )
            for i, text in enumerate(steps)
        ]
        scores = await self.scorer.score(problem, candidates)
        return [s.value if s.value is not None else 0.0 for s in scores]


def _question(prompt: Any) -> str:
    """its_hub hands the PRM the prompt it was given: the question."""
    if isinstance(prompt, str):
        return prompt
    raise TypeError(f"unexpected prompt {prompt!r:.100}")


def build(job: dict[str, Any], problems: dict[str, Problem]) -> tuple[Any, int]:
    name, budget = job["strategy"], int(job["budget"])
    if name == "self_consistency":
        spec = AnswerSpec.model_validate(job["answer_spec"])
        return SelfConsistency(lambda text: extract_answer(text, spec)), budget
    sg = StepGeneration(
        max_steps=int(job["max_depth"]),
        step_token=job["step"],
        stop_token=job["final_marker"],
        temperature=float(job["temperature"]),
    )
    prm = OraclePRM(job["scorer_path"], job["scorer_kind"], problems, job["step"])
    if name == "particle_filter":
        return ParticleFiltering(sg, prm), budget
    if name == "beam_search":
        return BeamSearch(sg, prm, beam_width=int(job["beam_width"])), budget
    raise SystemExit(f"unknown strategy {name}")


async def run(job: dict[str, Any]) -> dict[str, Any]:
    problems = {p["question"]: Problem(**p) for p in job["problems"]}
    algorithm, budget = build(job, problems)
    step_level = job["strategy"] != "self_consistency"
    lm = OpenAICompatibleLanguageModel(
        endpoint=job["url"] + "/v1",
        api_key="none",
        model_name=job["model"],
        system_prompt=job.get("system_prompt"),
        max_completion_tokens=int(job["step_max_tokens"] if step_level else job["max_tokens"]),
        temperature=float(job["temperature"]),
    )
    gate = asyncio.Semaphore(int(job["concurrency"]))
    texts: dict[str, str] = {}

    async def one(problem: Problem) -> None:
        async with gate:
            response = await algorithm.ainfer(lm, problem.question, budget)
            texts[problem.id] = str(response.get("content") or "")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(p) for p in problems.values()))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await lm.close()
    return {"texts": texts, "wall_seconds": wall, "cpu_seconds": cpu}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(asyncio.run(run(job))))


if __name__ == "__main__":
    main()

"""Runs in the references environment: its_hub's particle filtering and particle Gibbs on
the scripted policy and PRM of scripted_paths.py, printing statistics as JSON.

    python its_hub_reference.py SPEC.json   (SPEC: {"configs": [...]})

Per config and seed, one its_hub search; recorded: after each resampling, how many of the
resampled particles are on track (the resampling distribution), how many free particles draw
the reference (particle Gibbs), the particle its_hub selects (its final choice) and a
weighted vote over its final particles (Branchwise's default rule).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted_paths import DEPTH, next_state, outcome, path_score, weighted_vote


class ScriptedSteps:
    """Stands in for its_hub's StepGeneration: a step is the next abstract state."""

    max_steps = DEPTH

    def __init__(self, error_rate: float, rng: random.Random) -> None:
        self.error_rate = error_rate
        self.rng = rng

    async def aforward(self, lm, prompts, steps_so_far, tools=None, tool_choice=None):
        out = []
        for steps in steps_so_far:
            step = next_state(steps, self.error_rate, self.rng)
            out.append((step, len(steps) + 1 >= DEPTH))
        return out

    def _post_process(self, steps: list[str], stopped: bool = False) -> str:
        return "|".join(steps)


class ScriptedPRM:
    async def ascore(self, prompt: str, responses: list[str]) -> list[float]:
        return [path_score(r.split("|")) for r in responses]


def run_config(config: dict) -> dict:
    from its_hub.core.algorithms.particle_gibbs import ParticleGibbs

    survivors: Counter[str] = Counter()
    references: Counter[str] = Counter()  # free particles drawing the reference, by step
    chosen: Counter[str] = Counter()
    voted: Counter[str] = Counter()
    for seed in range(config["seeds"]):
        random.seed(seed)
        np.random.seed(seed)
        steps = ScriptedSteps(config["error_rate"], random.Random(10_000 + seed))
        # ParticleGibbs with one iteration is its_hub's particle filtering; its ParticleFiltering
        # class drops `resampling_method` (always multinomial), so the base class is used.
        algo = ParticleGibbs(
            steps,
            ScriptedPRM(),
            num_iterations=config["iterations"],
            resampling_method=config["resampling"],
        )
        sweep = {"n": 0}
        original = algo._resampling

        def record(particles, probabilities, count, _original=original, _sweep=sweep):
            drawn = _original(particles, probabilities, count)
            step = (
                min(len(p.steps) for p in particles if not p.is_stopped)
                if any(not p.is_stopped for p in particles)
                else max(len(p.steps) for p in particles)
            )
            on_track = sum(1 for p in drawn if outcome(p.steps[:step]) == "ok")
            survivors[f"{step}:{on_track}"] += 1
            if _sweep["n"] > 0 and step < DEPTH:  # a copy of the reference is still longer
                references[f"{step}:{sum(1 for p in drawn if len(p.steps) > step)}"] += 1
            if step == DEPTH:
                _sweep["n"] += 1
            return drawn

        algo._resampling = record
        budget = config["particles"] * config["iterations"]
        result = asyncio.run(algo.ainfer(None, "q", budget, return_response_only=False))
        responses, weights = result.responses_lst[-1], result.log_weights_lst[-1]
        paths = [r["content"].split("|") for r in responses]
        chosen[outcome(paths[result.selected_index])] += 1
        voted[weighted_vote([outcome(p) for p in paths], weights)] += 1
    return {
        **config,
        "survivors": dict(survivors),
        "references": dict(references),
        "chosen": dict(chosen),
        "voted": dict(voted),
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    import its_hub

    results = [run_config(c) for c in spec["configs"]]
    print(json.dumps({"its_hub": its_hub.__version__, "configs": results}))


if __name__ == "__main__":
    main()

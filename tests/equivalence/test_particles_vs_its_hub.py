"""Particle filtering and particle Gibbs against its_hub's (released package, recorded).

The same scripted process on both sides (scripted_paths.py: four steps, each going wrong
with probability 0.4 by 1..9, a PRM that prefers a few wrong answers to the right one), N = 4.
Compared, config by config (its_hub's multinomial and systematic resampling, one to three
sweeps): after each resampling, how many particles are on track and (Gibbs) how many free
particles draw the reference; and the final choice, by its_hub's rule (the particle of
highest weight: Branchwise's ``final: best``) and by Branchwise's default (a weighted vote,
applied to its_hub's final particles and weights). Every statistic within Z_LIMIT standard
errors; each planted deviation moves at least one beyond it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from tests.equivalence.branchwise_particles import particle_stats
from tests.equivalence.references import references
from tests.equivalence.scripted_paths import DEPTH
from tests.equivalence.tolerance import Z_LIMIT, histogram_values, mean_z, share_z

OUTCOMES = ("ok", "off9", "off8", "off7")


def _configs() -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = references()["its_hub"]["configs"]
    return configs


@functools.cache
def _branchwise(config_json: str, final: str, plant_json: str) -> dict[str, Any]:
    config, plant = json.loads(config_json), json.loads(plant_json)
    strategy = {
        "name": "particle_filter",
        "particles": config["particles"],
        "sweeps": config["iterations"],
        "resampling": config["resampling"],
        "final": final,
        **plant,
    }
    return particle_stats(strategy, config["error_rate"], config["seeds"])


def deviations(config: dict[str, Any], plant: dict[str, Any]) -> dict[str, float]:
    """Every statistic's z (its_hub against Branchwise) for one config (a planted deviation:
    the resampling statistics and its_hub's own final rule only)."""
    key = json.dumps(config, sort_keys=True), json.dumps(plant, sort_keys=True)
    best = _branchwise(key[0], "best", key[1])
    voted = None if plant else _branchwise(key[0], "weighted_vote", key[1])
    seeds = config["seeds"]
    z: dict[str, float] = {}
    for step in range(1, DEPTH):
        z[f"on track after step {step}"] = mean_z(
            histogram_values(config["survivors"], step), histogram_values(best["survivors"], step)
        )
        if config["iterations"] > 1:
            z[f"reference drawn at step {step}"] = mean_z(
                histogram_values(config["references"], step),
                histogram_values(best["references"], step),
            )
    for outcome in OUTCOMES:
        ours, theirs = best["chosen"].get(outcome, 0), config["chosen"].get(outcome, 0)
        z[f"chosen {outcome} (best)"] = share_z(theirs, seeds, ours, seeds)
        if voted is not None:
            ours, theirs = voted["chosen"].get(outcome, 0), config["voted"].get(outcome, 0)
            z[f"chosen {outcome} (weighted vote)"] = share_z(theirs, seeds, ours, seeds)
    return z


def _name(config: dict[str, Any]) -> str:
    kind = "filter" if config["iterations"] == 1 else f"gibbs{config['iterations']}"
    return f"{kind}-{config['resampling']}"


@pytest.mark.parametrize("index", range(4), ids=lambda i: _name(_configs()[i]))
def test_particle_methods_match_its_hub(index: int) -> None:
    z = deviations(_configs()[index], {})
    beyond = {k: round(v, 2) for k, v in z.items() if abs(v) > Z_LIMIT}
    assert not beyond, f"beyond {Z_LIMIT} standard errors of its_hub: {beyond}"


PLANTS = [
    (0, {"temperature": 3.0}, "flatter weights"),
    (2, {"reference_weight": "step"}, "Branchwise's earlier reference weight"),
    (3, {"final_sweeps": "all"}, "Branchwise's earlier answer pool over all sweeps"),
]


@pytest.mark.parametrize(("index", "plant", "what"), PLANTS, ids=[p[2] for p in PLANTS])
def test_a_planted_deviation_is_detected(index: int, plant: dict[str, Any], what: str) -> None:
    z = deviations(_configs()[index], plant)
    assert max(abs(v) for v in z.values()) > Z_LIMIT, f"{what} went unnoticed: {z}"

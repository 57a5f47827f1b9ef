"""AB-MCTS-A and AB-MCTS-M against treequest's (released package, recorded).

AB-MCTS-A: both searches grow the same synthetic trees (synthetic_trees.py: two continuous
and two 0/1 shapes plus a mixed one, 24 iterations, 200 seeds; Branchwise through the
strategy's own policy, branchwise_trees.py); per shape the paired differences of wider
decisions, deeper steps, best and mean score stay within Z_LIMIT standard errors.

AB-MCTS-M: treequest fits its model by NUTS (about a minute per fit here), so whole searches
over many seeds are out of reach; the comparison is per decision, on nodes whose children
hold given subtree scores (0/1 and continuous, pruned subtrees included): the probability of
GEN and of each child, against treequest's over four NUTS fits (the fits' spread is part of
the standard error). Each planted deviation (Branchwise's earlier model, mean draws, no
pruning; a wrong AB-MCTS-A prior) moves at least one statistic beyond Z_LIMIT.
"""

from __future__ import annotations

import functools
import json
import math
import random
import statistics
from collections import Counter
from typing import Any

import pytest

from branchwise.strategies.ab_mcts import ABMCTS, ABMCTSConfig
from branchwise.strategies.ab_mcts_m import ABMCTSM, ABMCTSMConfig
from tests.equivalence.branchwise_trees import grow
from tests.equivalence.references import references
from tests.equivalence.synthetic_trees import SHAPES
from tests.equivalence.tolerance import Z_LIMIT, paired_z

METRICS = ("wider", "deeper", "best", "mean")
DECISIONS = 3000  # Branchwise decisions per case
# A node whose subtree scores are all equal leaves sigma_y's posterior improper at zero: there
# the reference's answer is where its NUTS chains stall (0.41 to 0.57 for GEN over six fits of
# [[0,0,0,0],[0]]; Branchwise's grid gives 0.55), not a property of the model, so such cases get
# an absolute tolerance of about that spread.
IMPROPER_TOLERANCE = 0.15


def _searches() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = references()["treequest_searches"]["searches"]
    return found


def _decisions() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = references()["treequest_decisions"]["decisions"]
    return found


def search_deviations(case: dict[str, Any], plant: dict[str, Any]) -> dict[str, float]:
    shape = SHAPES[case["shape"]]
    config = ABMCTSConfig(scorer="prm", **plant)
    ours = [grow(ABMCTS(config).policy("r"), shape, s, case["iterations"]) for s in case["seeds"]]
    return {m: paired_z([r[m] for r in case["runs"]], [r[m] for r in ours]) for m in METRICS}


@pytest.mark.parametrize("index", range(5), ids=lambda i: _searches()[i]["shape"])
def test_ab_mcts_a_grows_trees_like_treequest(index: int) -> None:
    z = search_deviations(_searches()[index], {})
    beyond = {k: round(v, 2) for k, v in z.items() if abs(v) > Z_LIMIT}
    assert not beyond, f"beyond {Z_LIMIT} standard errors of treequest: {beyond}"


def test_ab_mcts_a_planted_prior_is_detected() -> None:
    z = {
        f"{case['shape']} {m}": v
        for case in _searches()[:2]
        for m, v in search_deviations(case, {"prior_tau2": 1.0}).items()
    }
    assert max(abs(v) for v in z.values()) > Z_LIMIT, f"a 10x prior scale went unnoticed: {z}"


@functools.cache
def _shares(groups_json: str, plant_json: str) -> dict[str, float]:
    """Branchwise's share of each option at a node whose children hold these scores."""
    groups, plant = json.loads(groups_json), json.loads(plant_json)
    policy: Any = ABMCTSM(ABMCTSMConfig(scorer="prm", **plant)).policy("r")
    for j, group in enumerate(groups):  # each child a chain holding its subtree's scores
        trail = ["r"]
        for k, y in enumerate(group):
            node = f"r.{j}" + ".0" * k
            policy.record(trail, node, y)
            trail.append(node)
    kids = [f"r.{j}" for j in range(len(groups))]
    rng = random.Random(0)
    picks = Counter(policy.choose("r", kids, rng) for _ in range(DECISIONS))
    return {"gen": picks[None] / DECISIONS} | {
        str(j): picks[k] / DECISIONS for j, k in enumerate(kids)
    }


def improper(groups: list[list[float]]) -> bool:
    """True when some child's subtree holds two or more scores, all equal."""
    return any(len(g) > 1 and len(set(g)) == 1 for g in groups)


def decision_deviations(case: dict[str, Any], plant: dict[str, Any]) -> dict[str, float]:
    """z of each option's share: treequest's fits (mean, fit-to-fit spread) against ours.

    For an improper case: the difference in units of IMPROPER_TOLERANCE, scaled to Z_LIMIT.
    """
    ours = _shares(json.dumps(case["groups"]), json.dumps(plant, sort_keys=True))
    z: dict[str, float] = {}
    for option in ours:
        fits = [c[option] / sum(c.values()) for c in case["counts"]]
        theirs, mine = statistics.fmean(fits), ours[option]
        if improper(case["groups"]):
            z[option] = (theirs - mine) / IMPROPER_TOLERANCE * Z_LIMIT
            continue
        spread = statistics.variance(fits) / len(fits)
        z[option] = (theirs - mine) / math.sqrt(spread + mine * (1 - mine) / DECISIONS + 1e-6)
    return z


@pytest.mark.parametrize("index", range(7), ids=lambda i: str(_decisions()[i]["groups"]))
def test_ab_mcts_m_decides_like_treequest(index: int) -> None:
    z = decision_deviations(_decisions()[index], {})
    beyond = {k: round(v, 2) for k, v in z.items() if abs(v) > Z_LIMIT}
    assert not beyond, f"beyond {Z_LIMIT} standard errors of treequest: {beyond}"


PLANTS = [
    ({"model": "conjugate", "prior_mean_sd": 0.5}, "Branchwise's earlier model"),
    ({"draws": "mean"}, "posterior means instead of predictive draws"),
    ({"prune_subtrees": False}, "no subtree pruning"),
]


@pytest.mark.parametrize(("plant", "what"), PLANTS, ids=[p[1] for p in PLANTS])
def test_ab_mcts_m_planted_deviation_is_detected(plant: dict[str, Any], what: str) -> None:
    z = {
        f"{case['groups']} {option}": v
        for case in _decisions()
        for option, v in decision_deviations(case, plant).items()
    }
    assert max(abs(v) for v in z.values()) > Z_LIMIT, f"{what} went unnoticed: {z}"

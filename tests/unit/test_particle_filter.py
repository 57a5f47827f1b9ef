"""Particle filter: logit weights, ESS-triggered resampling, finished particles stay finished."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from branchwise.core.graph import Node, Score, SearchGraph
from branchwise.strategies.particle_filter import (
    ParticleFilter,
    ParticleFilterConfig,
    Sweep,
    log_weight,
)
from branchwise.strategies.resampling import softmax
from tests.conftest import make_problem
from tests.unit.step_helpers import TreePort, run_strategy

NOISY = [{"kind": "noisy_prm", "name": "prm", "noise": 0.25}]


def _pf(**extra: Any) -> dict[str, Any]:
    return {"name": "particle_filter", "particles": 6, "scorer": "prm", **extra}


def test_weights_are_a_softmax_of_logits_over_temperature() -> None:
    assert log_weight(0.8, 1.0, 1e-4) == pytest.approx(math.log(4.0))
    assert log_weight(0.8, 0.5, 1e-4) == pytest.approx(2 * math.log(4.0))
    assert log_weight(1.0, 1.0, 0.01) == pytest.approx(math.log(99.0))  # clipped, finite
    weights = softmax([log_weight(s, 2.0, 1e-4) for s in (0.9, 0.5, 0.1)])
    # softmax(logit(s)/T) = (s/(1-s))^(1/T) normalised
    raw = [(s / (1 - s)) ** 0.5 for s in (0.9, 0.5, 0.1)]
    assert weights == pytest.approx([r / sum(raw) for r in raw])


def test_finished_particles_are_never_expanded_and_every_step_resamples() -> None:
    # The paper's filter resamples after every step; the old default waited for ESS < N/2.
    problems = [make_problem(i, steps=4) for i in range(5)]
    results, engine = run_strategy(_pf(), problems, scorers=NOISY, error_rate=0.4)
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        assert result.detail["resamples"] == len(result.detail["ess"]) >= 4
        for node in graph.nodes():
            if node.terminal:
                assert graph.children(node.id) == []
        assert 1 <= result.detail["finished"] <= 6
    expanded = {
        r.request_id.split(":")[-1].split("x")[0].rsplit(".", 1)[0] for r in engine.requests
    }
    for result in results:
        assert result.graph is not None
        assert not any(n.id in expanded for n in result.graph.terminals())


def test_resampling_drops_low_weight_particles_and_prunes_them() -> None:
    problems = [make_problem(i, steps=4) for i in range(8)]
    results, _ = run_strategy(_pf(), problems, scorers=NOISY, error_rate=0.5)
    pruned_values: list[float] = []
    kept_values: list[float] = []
    for result in results:
        graph = result.graph
        assert graph is not None
        for node in graph.nodes():
            score = graph.score(node.id, "prm")
            if node.parent_id is None or score is None or score.value is None:
                continue
            if graph.state(node.id).status == "pruned":
                assert graph.children(node.id) == []  # a dropped particle stops
                pruned_values.append(score.value)
            else:
                kept_values.append(score.value)
    assert pruned_values
    assert sum(pruned_values) / len(pruned_values) < 0.5 < sum(kept_values) / len(kept_values)


def test_adaptive_without_threshold_never_resamples() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(
        _pf(schedule="adaptive", ess_threshold=0.0), problems, scorers=NOISY, error_rate=0.4
    )
    for result in results:
        assert result.detail["resamples"] == 0
        # without resampling the particles are independent chains: N finished paths
        assert result.detail["finished"] == 6


def _scored_graph(scores: dict[str, float]) -> SearchGraph:
    graph = SearchGraph("p", (1,), "q")
    for node_id, value in scores.items():
        parent = node_id.rsplit(".", 1)[0]
        graph.reserve_child_ids(parent, 1)
        node = Node(id=node_id, parent_id=parent, depth=node_id.count("."), token_ids=(), text="")
        graph.add_child(node)
        graph.set_score(node_id, "prm", Score(value=value, step_values=(value,)))
    return graph


@pytest.mark.parametrize(
    ("schedule", "carry"),
    [("every_step", "incremental"), ("adaptive", "incremental"), ("adaptive", "product")],
)
def test_adaptive_weights_carry_incremental_potentials_and_reset_after_resampling(
    schedule: str, carry: str
) -> None:
    scores = {"r.0": 0.8, "r.1": 0.3, "r.0.0": 0.6, "r.1.0": 0.9}
    graph = _scored_graph(scores)
    ctx: Any = TreePort(graph, random.Random(0))
    pf = ParticleFilter(
        ParticleFilterConfig(scorer="prm", particles=2, schedule=schedule, adaptive_weight=carry)  # type: ignore[arg-type]
    )
    sweep = Sweep(slots=[graph.node("r.0"), graph.node("r.1")], log_weights=[0.0, 0.0])
    pf._weigh(ctx, sweep)
    sweep.slots = [graph.node("r.0.0"), graph.node("r.1.0")]
    pf._weigh(ctx, sweep)

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    if schedule == "adaptive" and carry == "product":  # the earlier rule: every potential again
        expected = [logit(0.8) + logit(0.6), logit(0.3) + logit(0.9)]
    else:
        # resampled every step: the latest potential; adaptive, incremental: the potentials'
        # increments telescope to the latest path value's (0.6 against 0.8, then 0.8 itself)
        expected = [logit(0.6), logit(0.9)]
    assert sweep.log_weights == pytest.approx(expected)
    pf._resample(ctx, sweep, softmax(sweep.log_weights))
    assert sweep.log_weights == [0.0, 0.0] and sweep.resamples == 1
    if schedule == "adaptive" and carry == "incremental":
        # a particle that does not move gains nothing: its value was already counted
        pf._weigh(ctx, sweep)
        assert sweep.log_weights == pytest.approx([0.0, 0.0])


def test_particle_gibbs_keeps_a_reference_particle_through_resampling() -> None:
    problems = [make_problem(i, steps=3) for i in range(4)]
    single, _ = run_strategy(_pf(particles=4), problems, scorers=NOISY, error_rate=0.4)
    results, engine = run_strategy(
        _pf(particles=4, sweeps=3), problems, scorers=NOISY, error_rate=0.4
    )
    for result, alone in zip(results, single, strict=True):
        graph = result.graph
        assert graph is not None and result.error is None
        assert result.detail["sweeps"] == 3 and len(result.detail["references"]) == 2
        for ref in result.detail["references"]:
            node = graph.node(ref)
            assert node.terminal and graph.state(ref).status == "terminal"  # never pruned
            for step in graph.path(ref)[1:]:
                assert graph.state(step.id).status != "pruned"
        roots = [
            r.n
            for r in engine.requests
            if r.request_id.split(":")[1] == result.problem_id
            and r.request_id.split(":")[-1].count(".") == 1
        ]
        assert roots[:1] == [4] and all(n <= 3 for n in roots[1:])  # 1 slot is the reference
        assert result.usage["generated_tokens"] > 1.5 * alone.usage["generated_tokens"]


@pytest.mark.parametrize("how", ["systematic", "multinomial"])
def test_duplicated_particles_share_one_request(how: str) -> None:
    problems = [make_problem(0, steps=4)]
    results, engine = run_strategy(
        _pf(resampling=how, particles=8), problems, scorers=NOISY, error_rate=0.5
    )
    assert engine.requests[0].n == 8  # all particles start at the root
    assert sum(r.n for r in engine.requests) <= 8 * 6
    assert results[0].answer is not None

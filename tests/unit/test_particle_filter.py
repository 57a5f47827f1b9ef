"""Particle filter: logit weights, ESS-triggered resampling, finished particles stay finished."""

from __future__ import annotations

import math
from typing import Any

import pytest

from strategies.particle_filter import log_weight
from strategies.resampling import softmax
from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy

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


def test_finished_particles_are_never_revived() -> None:
    problems = [make_problem(i, steps=4) for i in range(5)]
    results, engine = run_strategy(_pf(ess_threshold=1.0), problems, scorers=NOISY, error_rate=0.4)
    for result in results:
        graph = result.graph
        assert graph is not None and result.error is None
        assert result.detail["resamples"] >= 1
        for node in graph.nodes():
            if node.terminal:
                assert graph.children(node.id) == []
                assert graph.state(node.id).status == "terminal"  # never pruned by resampling
        assert result.detail["finished"] == len(graph.terminals()) <= 6
    expanded = {
        r.request_id.split(":")[-1].split("x")[0].rsplit(".", 1)[0] for r in engine.requests
    }
    for result in results:
        assert result.graph is not None
        assert not any(n.id in expanded for n in result.graph.terminals())


def test_resampling_drops_low_weight_particles_and_prunes_them() -> None:
    problems = [make_problem(i, steps=4) for i in range(5)]
    results, _ = run_strategy(_pf(ess_threshold=1.0), problems, scorers=NOISY, error_rate=0.5)
    for result in results:
        graph = result.graph
        assert graph is not None
        pruned = [n for n in graph.nodes() if graph.state(n.id).status == "pruned"]
        assert all(not n.terminal for n in pruned)
        assert all(graph.children(n.id) == [] for n in pruned)  # a dropped particle stops
        if pruned:
            worst_pruned = max(graph.score(n.id, "prm").value or 0 for n in pruned)  # type: ignore[union-attr]
            assert worst_pruned < 0.9  # on-track prefixes score above 0.5; they are kept


def test_no_resampling_below_threshold_zero() -> None:
    problems = [make_problem(i, steps=3) for i in range(3)]
    results, _ = run_strategy(_pf(ess_threshold=0.0), problems, scorers=NOISY, error_rate=0.4)
    for result in results:
        assert result.detail["resamples"] == 0
        # without resampling the particles are independent chains: N finished paths
        assert result.detail["finished"] == 6


@pytest.mark.parametrize("how", ["systematic", "multinomial"])
def test_duplicated_particles_share_one_request(how: str) -> None:
    problems = [make_problem(0, steps=4)]
    results, engine = run_strategy(
        _pf(ess_threshold=1.0, resampling=how, particles=8), problems, scorers=NOISY, error_rate=0.5
    )
    assert engine.requests[0].n == 8  # all particles start at the root
    assert sum(r.n for r in engine.requests) <= 8 * 6
    assert results[0].answer is not None

"""Reasoning with Sampling: Metropolis-Hastings towards p^alpha beats plain and low-temperature
sampling where the likelier first token has an uncertain future."""

from __future__ import annotations

import math
from typing import Any

import pytest

from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.scripted_tokens import TokenSampler
from branchwise.strategies.power_sampling import PowerSampling, proposal_logprob
from tests.unit.token_policies import TrapPolicy, run_on, trap_problems

POWER = {"name": "power_sampling", "alpha": 4.0, "blocks": 1, "mcmc_steps": 30}


def _accuracy(strategy: dict[str, Any], count: int = 60) -> tuple[float, list[Any]]:
    results = run_on(ScriptedEngine(TokenSampler(TrapPolicy())), strategy, trap_problems(count))
    assert all(r.error is None for r in results), [r.error for r in results]
    return sum(r.correct is True for r in results) / count, results


def test_the_proposal_density_is_p_to_the_alpha_normalised() -> None:
    dist = [math.log(0.6), math.log(0.3), math.log(0.1)]
    z = sum(math.exp(4 * lp) for lp in dist)
    assert proposal_logprob(dist[1], dist, 4.0) == pytest.approx(4 * dist[1] - math.log(z))
    # a top missing the tail: the normaliser lies between its bounds
    bounded = proposal_logprob(dist[0], dist[:2], 4.0)
    low, high = 4 * dist[0] - math.log(z + 0.1 * 0.3**3), 4 * dist[0] - math.log(z - 0.1**4)
    assert low <= bounded <= high


def test_power_sampling_beats_plain_and_low_temperature_sampling() -> None:
    power, results = _accuracy(POWER)
    plain, _ = _accuracy({"name": "self_consistency", "n": 1})
    assert plain == pytest.approx(0.4, abs=0.15)
    assert power >= 0.7 > plain + 0.15
    details = [r.detail for r in results]
    assert all(d["proposals"] == 30 for d in details)
    assert 0 < sum(d["accepted"] for d in details) < 30 * len(details)
    # the cost is honest: every proposal's tokens generated, every scoring a prefill
    assert all(r.usage["prompt_tokens"] > r.usage["generated_tokens"] > 30 for r in results)


def test_without_the_acceptance_test_it_is_low_temperature_sampling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PowerSampling, "_accept", lambda *args: True)
    ablated, _ = _accuracy(POWER)
    assert ablated < 0.35  # the proposal alone (temperature 1/4) prefers the trap

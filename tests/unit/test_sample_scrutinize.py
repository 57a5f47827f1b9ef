"""Sample, Scrutinize and Scale: k self-verifications per candidate, pairwise tie-break."""

from __future__ import annotations

import random
import re

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from tests.conftest import make_problem
from tests.unit.sampling_support import run_strategy


class VerifyingPolicy:
    """Solves badly (the right answer 9 is a minority) but verifies better than chance: a
    right candidate is called correct 65 % of the time, a wrong one 35 %; asked to compare,
    it names the right one 80 % of the time."""

    def __init__(self) -> None:
        self.checks = 0
        self.comparisons = 0

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        answers = re.findall(r"Answer: (\d+)", prompt)
        if "Verdict:" in prompt:
            self.checks += 1
            right = answers[-1] == "9"
            verdict = "correct" if rng.random() < (0.65 if right else 0.35) else "incorrect"
            text = f"checked\nVerdict: {verdict}"
        elif "Better:" in prompt:
            self.comparisons += 1
            a_right = answers[0] == "9"
            truthful = rng.random() < 0.8
            text = "Better: " + ("A" if a_right == truthful else "B")
        else:
            answer = rng.choices(["9", "7", "8"], [0.3, 0.45, 0.25])[0]
            text = f"so {answer}\nAnswer: {answer}"
        body = text + EOS
        return Continuation(body, (-0.1,) * len(body))


SCORERS = [{"kind": "self_verification", "name": "self", "verifications": 1}]
PROBLEMS = [make_problem(i) for i in range(30)]


def _accuracy(strategy: dict[str, object], verifications: int = 1) -> tuple[int, VerifyingPolicy]:
    policy = VerifyingPolicy()
    scorers = [{**SCORERS[0], "verifications": verifications}]
    results = run_strategy(strategy, PROBLEMS, ScriptedEngine(policy), scorers=scorers)
    assert all(r.error is None for r in results)
    return sum(r.answer == "9" for r in results), policy


SSS = {"name": "sample_scrutinize", "n": 8, "verifier": "self"}


def test_accuracy_rises_with_the_number_of_verifications() -> None:
    voted, _ = _accuracy({"name": "self_consistency", "n": 8})
    one, _ = _accuracy({**SSS, "tie_break": False}, verifications=1)
    many, policy = _accuracy({**SSS, "tie_break": False}, verifications=8)
    assert voted <= 12  # the majority is mostly wrong
    assert many >= one + 6 and many >= 22
    assert policy.checks == 8 * 8 * len(PROBLEMS)  # every candidate checked k times


def test_accuracy_rises_with_the_number_of_samples() -> None:
    few, _ = _accuracy({**SSS, "n": 2}, verifications=8)
    more, _ = _accuracy({**SSS, "n": 16}, verifications=8)
    assert more >= few + 5


def test_the_pairwise_tie_break_settles_tied_candidates() -> None:
    # one check each: many candidates tie at 1.0; the comparisons pick among them
    broken, policy = _accuracy({**SSS, "tie_margin": 0.0})
    unbroken, _ = _accuracy({**SSS, "tie_margin": 0.0, "tie_break": False})
    assert policy.comparisons > 0
    assert broken >= unbroken + 4


def test_verifier_tokens_are_charged_and_pairs_need_a_pairwise_scorer() -> None:
    def alone(problem: object) -> int:
        [r] = run_strategy(SSS, [problem], ScriptedEngine(VerifyingPolicy()), scorers=SCORERS)
        assert r.detail["verified"] == 8 and r.usage["scorer_calls"] >= 8
        return int(r.usage["scorer_generated_tokens"])

    # the checks and comparisons are charged to the search that asked for them, apart from its
    # own samples: six problems sharing one scorer at once are each charged what it costs alone
    results = run_strategy(SSS, PROBLEMS[:6], ScriptedEngine(VerifyingPolicy()), scorers=SCORERS)
    spent = [r.usage["scorer_generated_tokens"] for r in results]
    assert spent == [alone(p) for p in PROBLEMS[:6]] and len(set(spent)) > 1 and min(spent) > 0
    assert all(r.usage["scorer_prompt_tokens"] > r.usage["prompt_tokens"] for r in results)
    plain = run_strategy({"name": "self_consistency", "n": 8}, PROBLEMS[:1], ScriptedEngine())
    assert plain[0].usage["scorer_generated_tokens"] == 0
    with pytest.raises(RecipeError, match="compares pairs"):
        run_strategy(
            {**SSS, "verifier": "oracle"},
            PROBLEMS[:1],
            ScriptedEngine(),
            scorers=[{"kind": "reference_answer", "name": "oracle"}],
        )

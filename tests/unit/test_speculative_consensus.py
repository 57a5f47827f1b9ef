"""Multi-sample speculative decoding keeps the sampling distribution exact while most tokens
come from drafts: checked against the scripted policy's known distribution."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest

from branchwise.core.problem import Problem
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.scripted_tokens import reference_tokens
from branchwise.orchestrator.results import ProblemResult
from branchwise.strategies import speculative_consensus
from branchwise.strategies.speculative_consensus import accepted_length, consensus_draft
from tests.conftest import make_problem
from tests.unit.token_policies import run_on

ERROR_RATE = 0.3
LINES = 4  # three arithmetic lines and the answer line, each with a number that can go wrong
CHI2_DF4_P001 = 18.467  # chi-square, 4 degrees of freedom, upper 0.1% point
SPEC = {"name": "speculative_consensus", "n": 8, "match": 4, "draft_tokens": 12}


def _first_wrong_lines(results: list[ProblemResult], problems: list[Problem]) -> Counter[int]:
    """Per finished path: the first line that differs from the reference (LINES: none)."""
    counts: Counter[int] = Counter()
    by_id = {p.id: p for p in problems}
    for result in results:
        assert result.error is None and result.graph is not None, result.error
        reference = str(by_id[result.problem_id].solution).split("\n")
        for node in result.graph.terminals():
            lines = result.graph.solution_text(node.id).split("\n")
            wrong = [i for i, (a, b) in enumerate(zip(lines, reference, strict=False)) if a != b]
            counts[wrong[0] if wrong else LINES] += 1
    return counts


def _chi_square(counts: Counter[int]) -> float:
    """Against the policy's law: the first error at line i with probability 0.7^i 0.3."""
    total = sum(counts.values())
    expected = [(1 - ERROR_RATE) ** i * ERROR_RATE for i in range(LINES)]
    expected.append((1 - ERROR_RATE) ** LINES)
    return sum((counts[i] - total * e) ** 2 / (total * e) for i, e in enumerate(expected))


def _same_pairs(results: list[ProblemResult]) -> float:
    """Share of a problem's path pairs that wrote the same text."""
    same = total = 0
    for result in results:
        assert result.graph is not None
        texts = [result.graph.solution_text(n.id) for n in result.graph.terminals()]
        for a, b in itertools.combinations(texts, 2):
            same, total = same + (a == b), total + 1
    return same / total


# Independent samples coincide with probability sum_x p(x)^2: no error, or a first error at
# line i with one of 9 offsets (the rest of the text follows from it).
SAME_TEXT = (1 - ERROR_RATE) ** (2 * LINES) + sum(
    9 * ((1 - ERROR_RATE) ** i * ERROR_RATE / 9) ** 2 for i in range(LINES)
)


def _run(strategy: dict[str, Any], problems: list[Problem]) -> list[ProblemResult]:
    engine = ScriptedEngine(reference_tokens({p.question: str(p.solution) for p in problems}, 0.3))
    return run_on(engine, strategy, problems, max_tokens=80)


PROBLEMS = [make_problem(i, steps=3, seed=7) for i in range(50)]


def test_the_consensus_draft_is_what_most_other_paths_wrote_next() -> None:
    others = [(1, 2, 3, 4, 5), (9, 2, 3, 4, 6), (2, 3, 4, 5, 7)]
    assert consensus_draft((7, 2, 3), others, match=2, length=3, min_votes=1) == (4, 5, 7)
    assert consensus_draft((7, 2, 3), others, match=2, length=3, min_votes=2) == (4, 5)
    assert consensus_draft((1,), others, match=2, length=2, min_votes=1) == (2, 3)  # opening
    assert consensus_draft((8, 8), others, match=2, length=3, min_votes=1) == ()
    rng = random.Random(0)
    kept = [accepted_length([-0.1, -0.1, -50.0], rng) for _ in range(2000)]
    assert max(kept) == 2 and Counter(kept)[2] / 2000 == pytest.approx(0.905**2, abs=0.03)


def test_drafted_paths_follow_the_policy_as_plain_sampling_does() -> None:
    plain = _first_wrong_lines(_run({"name": "self_consistency", "n": 8}, PROBLEMS), PROBLEMS)
    results = _run(SPEC, PROBLEMS)
    drafted = _first_wrong_lines(results, PROBLEMS)
    assert sum(plain.values()) == sum(drafted.values()) == 400
    assert _chi_square(plain) < CHI2_DF4_P001
    assert _chi_square(drafted) < CHI2_DF4_P001
    # the paths stay independent: they coincide no more often than independent samples
    assert _same_pairs(results) == pytest.approx(SAME_TEXT, abs=0.03)
    # and a good part of what the paths hold was drafted, not generated
    written = sum(r.detail["written_tokens"] for r in results)
    accepted = sum(r.detail["accepted_tokens"] for r in results)
    generated = sum(r.usage["generated_tokens"] for r in results)
    assert accepted / written > 0.3 and generated < 0.75 * written


def test_accepting_every_draft_breaks_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speculative_consensus, "accepted_length", lambda lps, rng: len(lps))
    results = _run(SPEC, PROBLEMS)
    assert _chi_square(_first_wrong_lines(results, PROBLEMS)) > CHI2_DF4_P001
    assert _same_pairs(results) > 4 * SAME_TEXT  # the followers copy the others

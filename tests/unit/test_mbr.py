"""MBR: equals majority vote under answer equality, picks the medoid, asks each pair once."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from branchwise.core.errors import RecipeError
from branchwise.core.graph import Node, Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import SCORERS, Candidate, PairwiseScorer
from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.strategies.mbr import MBR, MBRConfig
from branchwise.strategies.mbr_utilities import chrf, chrf_matrix
from branchwise.strategies.selection import argmax
from tests.conftest import make_problem
from tests.unit.sampling_support import ChoicePolicy, LearningEngine, run_strategy


class NumericDistanceJudge(PairwiseScorer):
    """Test judge: agreement = 1 - |a - b| / 100 between numeric answers; logs its pairs."""

    description = "test-only pairwise judge"
    asked: ClassVar[list[tuple[str, str]]] = []

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        raise NotImplementedError("pairwise only")

    async def compare(
        self, problem: Problem, pairs: Sequence[tuple[Candidate, Candidate]]
    ) -> list[Score]:
        out = []
        for a, b in pairs:
            self.asked.append((a.node_id, b.node_id))
            if a.answer is None or b.answer is None or "99" in (a.answer, b.answer):
                out.append(Score(value=None, error="judge output unreadable"))
            else:
                out.append(Score(value=1 - abs(float(a.answer) - float(b.answer)) / 100))
        return out


if "test_numeric_judge" not in SCORERS.names():
    SCORERS.register("test_numeric_judge", NumericDistanceJudge)


def test_chrf_values() -> None:
    assert chrf("abc", "abc") == 1.0
    assert chrf("abc", "xyz") == 0.0
    assert chrf("ab", "abc") == pytest.approx(14 / 19)  # P = 1, R = (2/3 + 1/2) / 2
    assert chrf("a b", "ab") == 1.0  # whitespace is ignored
    assert chrf("ab", "abc") == pytest.approx(chrf("abc", "ab"))  # beta 1 is symmetric
    assert chrf("ab", "abc", beta=2) != pytest.approx(chrf("abc", "ab", beta=2))
    assert chrf("", "") == 1.0 and chrf("", "a") == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_answer_equality_mbr_is_majority_vote(seed: int) -> None:
    problems = [make_problem(i, steps=4) for i in range(10)]
    mbr = run_strategy(
        {"name": "mbr", "n": 9, "utility": "answer_equality"},
        problems,
        ScriptedEngine(error_rate=0.4),
        seed=seed,
    )
    vote = run_strategy(
        {"name": "self_consistency", "n": 9}, problems, ScriptedEngine(error_rate=0.4), seed=seed
    )
    assert [r.answer for r in mbr] == [r.answer for r in vote]
    assert [r.node_id for r in mbr] == [r.node_id for r in vote]


def test_judge_utility_picks_the_medoid_and_asks_each_pair_once() -> None:
    options = [(f"Answer: {v}", 1.0, True) for v in (10, 11, 13, 20, 40)]
    NumericDistanceJudge.asked.clear()
    [result] = run_strategy(
        {"name": "mbr", "n": 7, "utility": "judge", "scorer": "judge", "pair_batch": 5},
        [make_problem(0)],
        ScriptedEngine(ChoicePolicy(options)),
        scorers=[{"kind": "test_numeric_judge", "name": "judge"}],
    )
    graph = result.graph
    assert graph is not None
    answers = sorted(float(n.answer) for n in graph.terminals() if n.answer is not None)
    assert len(answers) == 7
    # Utility is minus the distance, so the medoid of numbers on a line is their median.
    assert float(result.answer or "nan") == answers[3]
    asked = NumericDistanceJudge.asked
    assert len(asked) == 21 == result.detail["pairs"] == result.usage["scorer_calls"]
    assert len({frozenset(p) for p in asked}) == 21


def test_chrf_mbr_picks_the_text_medoid() -> None:
    texts = ["1+2=3\nAnswer: 3", "1+2=3\n3+4=7\nAnswer: 7", "5+5=10\n10+4=14\nAnswer: 14"]
    options = [(t, 1.0, True) for t in texts]
    for seed in range(4):
        [result] = run_strategy(
            {"name": "mbr", "n": 5},
            [make_problem(0)],
            ScriptedEngine(ChoicePolicy(options)),
            seed=seed,
        )
        assert result.graph is not None
        pool = [n for n in result.graph.terminals() if n.answer is not None]

        def total(a: str, pool_texts: list[str]) -> float:
            return sum(chrf(a, b) for b in pool_texts)

        solutions = [result.graph.solution_text(n.id) for n in pool]
        sums = [total(s, solutions) for s in solutions]
        best = max(sums)
        medoids = {pool[i].answer for i, s in enumerate(sums) if s == pytest.approx(best)}
        assert result.answer in medoids
        assert result.detail["pairs"] == 10


def test_pairs_the_judge_failed_are_left_out_not_guessed() -> None:
    # 99 is the most common answer, but the judge cannot read any pair that involves it.
    options = [("Answer: 99", 3.0, True), ("Answer: 5", 1.0, True), ("Answer: 6", 1.0, True)]
    [result] = run_strategy(
        {"name": "mbr", "n": 8, "utility": "judge", "scorer": "judge"},
        [make_problem(0)],
        ScriptedEngine(ChoicePolicy(options)),
        scorers=[{"kind": "test_numeric_judge", "name": "judge"}],
    )
    assert result.graph is not None
    answers = [n.answer for n in result.graph.terminals()]
    assert answers.count("99") >= 2 and len(set(answers)) > 1
    assert result.detail["failed_pairs"] > 0
    assert result.answer in ("5", "6")
    failed_ids = {n.id for n in result.graph.terminals() if n.answer == "99"}
    assert failed_ids.isdisjoint(result.detail["expected_utility"])


def test_judge_utility_needs_a_scorer_and_only_it_does() -> None:
    with pytest.raises(RecipeError, match="scorer"):
        run_strategy({"name": "mbr", "utility": "judge"}, [make_problem(0)], ScriptedEngine())
    with pytest.raises(RecipeError, match="only used"):
        run_strategy(
            {"name": "mbr", "utility": "chrf", "scorer": "oracle"},
            [make_problem(0)],
            ScriptedEngine(),
            scorers=[{"kind": "reference_answer", "name": "oracle"}],
        )


class _JudgingPolicy:
    """Solves like the reference policy; asked for agreement, compares the two answers."""

    def __init__(self, error_rate: float) -> None:
        from branchwise.orchestrator.engines.scripted import ReferencePolicy

        self.solver = ReferencePolicy({}, error_rate)

    def learn(self, solutions: dict[str, str]) -> None:
        self.solver.solutions.update(solutions)

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        if "reach the same final answer" not in prompt:
            return self.solver.continue_text(prompt, rng)
        answers = re.findall(r"Answer: (\S+)", prompt)
        verdict = " Yes" if len(answers) == 2 and answers[0] == answers[1] else " No"
        return Continuation(verdict + EOS, (-0.1,) * (len(verdict) + 1))


def test_agreement_judge_through_ctx_compare_acts_like_answer_equality() -> None:
    problems = [make_problem(i) for i in range(5)]
    engine = LearningEngine(_JudgingPolicy(error_rate=0.4))
    judged = run_strategy(
        {"name": "mbr", "n": 7, "utility": "judge", "scorer": "agree"},
        problems,
        engine,
        scorers=[{"kind": "agreement_judge", "name": "agree"}],
    )
    vote = run_strategy(
        {"name": "self_consistency", "n": 7}, problems, ScriptedEngine(error_rate=0.4)
    )
    assert [r.answer for r in judged] == [r.answer for r in vote]
    judge_requests = [r for r in engine.requests if r.request_id.startswith("judge:")]
    pairs = sum(int(r.detail["pairs"]) for r in judged)
    assert pairs == sum(r.usage["scorer_calls"] for r in judged)
    assert len(judge_requests) == 2 * pairs  # both presentation orders per unordered pair


def _pool(texts: Sequence[str]) -> list[Node]:
    return [
        Node(id=f"r.{i}", parent_id="r", depth=1, token_ids=(), text=t, answer=str(i))
        for i, t in enumerate(texts)
    ]


_CTX: Any = SimpleNamespace(solution=lambda n: n.text)
# Two texts whose 5-5 tie the old accumulation (a running sum in pair order) broke for B.
TIE_A = "894719*6593423\n209+4711+*220\n1=\n8+6\n=848*3\n3+9\n69477++=*51"
TIE_B = "9179+5\n330=41=35*256\n01*2\n=30\n9+89+101+3"


@pytest.mark.parametrize("first, second", [(TIE_A, TIE_B), (TIE_B, TIE_A)])
def test_exact_ties_go_to_the_earliest_node(first: str, second: str) -> None:
    pool = _pool([first, second] * 5)
    mbr = MBR(MBRConfig(n=10))
    expected, _, _ = asyncio.run(mbr._expected_utilities(_CTX, pool))
    assert expected["r.0"] == expected["r.1"]  # exactly: the same multiset of values
    assert argmax(pool, lambda n: expected[n.id]).node_id == "r.0"


def test_chrf_matrix_equals_pairwise_chrf_exactly() -> None:
    rng = random.Random(4)
    texts = ["", "", "a", "ab", "3+4=7", "3 + 4 = 7\nAnswer: 7"]
    texts += [
        "".join(rng.choice("0123456789+=*\n ") for _ in range(rng.randint(1, 80)))
        for _ in range(30)
    ]
    for beta in (1.0, 2.0):
        table = chrf_matrix(texts, order=6, beta=beta)
        for i, hyp in enumerate(texts):
            for j, ref in enumerate(texts):
                if i != j:
                    assert table[i][j] == chrf(hyp, ref, order=6, beta=beta), (i, j)


def test_chrf_counts_each_text_once_and_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import branchwise.strategies.mbr_utilities as utilities

    real = utilities.chrf_matrix
    calls: list[int] = []

    def slow(texts: Sequence[str], *, order: int, beta: float) -> list[list[float]]:
        calls.append(len(texts))
        time.sleep(0.3)  # a big pool's worth of work, blocking whatever thread runs it
        return real(texts, order=order, beta=beta)

    monkeypatch.setattr(utilities, "chrf_matrix", slow)
    rng = random.Random(0)
    pool = _pool(["".join(rng.choice("0123456789+=\n") for _ in range(200)) for _ in range(64)])

    async def scene() -> int:
        ticks = 0
        task = asyncio.create_task(MBR(MBRConfig(n=64))._expected_utilities(_CTX, pool))
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await task
        return ticks

    ticks = asyncio.run(scene())
    assert calls == [64]  # one pass over the pool, not one per pair
    assert ticks >= 10  # another coroutine kept running during the 0.3 s of utility work

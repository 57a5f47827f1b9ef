"""First-finish: the shortest sample wins; the rest are aborted, recorded and cost no more."""

from __future__ import annotations

import asyncio

from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, scripted_recipe
from tests.unit.sampling_support import ChoicePolicy, generated_in_graph, run_strategy

OPTIONS = [
    ("I give up", 1.0, True),
    ("1+1=2\nAnswer: 2", 1.0, True),
    ("1+1=2\n2+2=4\n4+4=8\n8+8=16\nAnswer: 16", 1.0, True),
]


def test_the_first_answer_wins_and_the_others_are_aborted_for_good() -> None:
    engine = ScriptedEngine(ChoicePolicy(OPTIONS), seconds_per_token=0.002)
    recipe = scripted_recipe({"name": "first_finish", "n": 6}, seed=3)

    async def go() -> tuple[ProblemResult, int]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            [result] = await orchestrator.run([make_problem(0)])
            spent = engine.generated_tokens
            await asyncio.sleep(0.1)  # an aborted request that kept going would show here
            return result, spent

    result, spent = asyncio.run(go())
    graph = result.graph
    assert graph is not None
    winner = graph.node(result.detail["winner"])
    assert winner.answer == result.answer is not None
    samples = graph.children("r")
    assert len(samples) == 6
    aborted = [n for n in samples if n.finish_reason == "abort"]
    assert aborted and [n.id for n in aborted] == result.detail["aborted"]
    for node in aborted:
        assert graph.state(node.id).status == "aborted"
        assert any(rid.endswith(f":{node.id}x1") for rid in engine.aborted)
        # Started together, so each was about as far along as the winner when stopped.
        assert abs(len(node.token_ids) - len(winner.token_ids)) <= 2
    finished_answers = [n for n in samples if n.terminal and n.answer is not None]
    assert min(len(n.token_ids) for n in finished_answers) == len(winner.token_ids)
    assert engine.generated_tokens == spent == result.usage["generated_tokens"]
    assert generated_in_graph(result) == spent
    assert result.usage["aborted_requests"] == len(aborted)


def test_require_answer_false_takes_whatever_finishes_first() -> None:
    for seed in range(8):
        policy = ChoicePolicy(OPTIONS)
        strict = run_strategy(
            {"name": "first_finish", "n": 6},
            [make_problem(0)],
            ScriptedEngine(policy, seconds_per_token=0.001),
            seed=seed,
        )[0]
        loose = run_strategy(
            {"name": "first_finish", "n": 6, "require_answer": False},
            [make_problem(0)],
            ScriptedEngine(policy, seconds_per_token=0.001),
            seed=seed,
        )[0]
        assert strict.graph is not None and loose.graph is not None
        texts = [n.text for n in strict.graph.children("r")]
        if any(t == "I give up" for t in texts):
            assert (
                loose.answer is None
                and loose.graph.node(loose.detail["winner"]).text == "I give up"
            )
        assert strict.answer is not None


def test_with_deterministic_timing_the_winner_repeats() -> None:
    def once() -> tuple[str | None, str | None]:
        engine = ScriptedEngine(ChoicePolicy(OPTIONS), seconds_per_token=0.002)
        [result] = run_strategy(
            {"name": "first_finish", "n": 5}, [make_problem(1)], engine, seed=11
        )
        return result.answer, result.node_id

    assert once() == once()


def test_nobody_with_an_answer_falls_back_to_a_vote_over_finished_samples() -> None:
    engine = ScriptedEngine(ChoicePolicy([("I give up", 1.0, True)]))
    [result] = run_strategy({"name": "first_finish", "n": 3}, [make_problem(0)], engine)
    assert result.answer is None and "winner" not in result.detail
    assert result.graph is not None and len(result.graph.terminals()) == 3

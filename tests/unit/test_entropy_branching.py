"""Entropy-adaptive branching: forks exactly at uncertain tokens, from the exact prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.engines.types import GenerationRequest, GenerationResult
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, teach
from tests.unit.sampling_support import (
    HardSpotPolicy,
    LearningEngine,
    WholeSampleEngine,
    generated_in_graph,
    graph_shape,
    run_strategy,
)

STRATEGY = {"name": "entropy_branching", "entropy_threshold": 1.0, "branch_factor": 3}


def test_forks_once_at_the_uncertain_token_into_the_top_alternatives() -> None:
    engine = LearningEngine(HardSpotPolicy(hard_line=1))
    problem = make_problem(0)
    [result] = run_strategy({**STRATEGY, "max_paths": 8}, [problem], engine)
    graph = result.graph
    assert graph is not None
    assert result.detail["forks"] == 1 and result.detail["paths"] == 3
    assert result.detail["unused_paths"] == 5
    # The first sample is aborted right at the uncertain token (the step's first result digit).
    first = graph.node("r.0")
    assert first.finish_reason == "abort" and graph.state("r.0").status == "aborted"
    lines = (problem.solution or "").split("\n")
    prefix = lines[0] + "\n" + lines[1].split("=")[0] + "="
    assert first.text == prefix + lines[1].split("=")[1][0]
    trunk = graph.node(result.detail["fork_nodes"][0])
    assert trunk.forced and trunk.text == prefix and trunk.generated_tokens == 0
    branches = graph.children(trunk.id)
    assert len(branches) == 3 and all(b.forced and len(b.token_ids) == 1 for b in branches)
    assert branches[0].token_ids[0] == first.token_ids[-1]  # the sampled token is the top one
    assert len({b.token_ids[0] for b in branches}) == 3
    # Each branch request's prompt is the exact tokens: prompt + prefix + the alternative.
    for branch in branches:
        expected = graph.full_token_ids(branch.id)
        assert any(r.prompt_token_ids == expected for r in engine.requests)
        [leaf] = graph.children(branch.id)
        assert leaf.terminal and leaf.answer is not None
    assert result.answer == problem.reference  # the sampled digit's branch agrees with itself
    assert result.usage["generated_tokens"] == generated_in_graph(result)
    assert any(rid.endswith(":r.0x1") for rid in engine.aborted)


def test_a_confident_prompt_stays_a_single_path() -> None:
    engine = LearningEngine(HardSpotPolicy(hard_line=99))
    [result] = run_strategy({**STRATEGY, "max_paths": 8}, [make_problem(1)], engine)
    assert result.graph is not None
    assert result.detail["forks"] == 0 and result.detail["paths"] == 1
    assert result.detail["unused_paths"] == 7
    assert len(result.graph) == 2 and result.correct
    assert len(engine.requests) == 1


@pytest.mark.parametrize("max_paths", [1, 2, 5, 9])
def test_paths_never_exceed_the_per_problem_cap(max_paths: int) -> None:
    engine = LearningEngine(HardSpotPolicy(hard_line=None))  # every token is uncertain
    strategy = {**STRATEGY, "max_paths": max_paths, "min_gap": 3}
    [result] = run_strategy(strategy, [make_problem(2)], engine)
    graph = result.graph
    assert graph is not None
    leaves = [
        n
        for n in graph.nodes()
        if n.terminal
        or (not graph.children(n.id) and graph.state(n.id).status == "open" and n.parent_id)
    ]
    assert result.detail["paths"] == len(leaves) == max_paths
    if max_paths == 1:
        assert result.detail["forks"] == 0 and len(engine.requests) == 1
    assert result.usage["generated_tokens"] == generated_in_graph(result)


def test_same_seed_same_tree_despite_concurrent_branches() -> None:
    def once() -> dict[str, object]:
        engine = LearningEngine(HardSpotPolicy(hard_line=None), seconds_per_token=0.0003)
        [result] = run_strategy(
            {**STRATEGY, "max_paths": 6, "min_gap": 5}, [make_problem(3)], engine, seed=5
        )
        assert result.graph is not None
        nodes = result.graph.to_dict()["nodes"]
        assert isinstance(nodes, list)
        # Aborted partial lengths depend on timing; everything else must not.
        return {
            "answer": result.answer,
            "nodes": [
                (n["id"], n["status"], n["forced"], n["text"] if n["status"] != "aborted" else "")
                for n in nodes
            ],
        }

    assert once() == once()


def test_token_budget_is_respected_with_an_anytime_answer() -> None:
    engine = LearningEngine(HardSpotPolicy(hard_line=None))
    [result] = run_strategy(
        {**STRATEGY, "max_paths": 8, "min_gap": 3},
        [make_problem(4)],
        engine,
        budget={"max_generated_tokens": 40},
    )
    assert result.error is None
    assert result.usage["generated_tokens"] <= 40


def test_config_errors_are_explicit() -> None:
    engine = LearningEngine(HardSpotPolicy(hard_line=1))
    with pytest.raises(RecipeError, match="never be reached"):
        run_strategy({**STRATEGY, "entropy_threshold": 2.0}, [make_problem(0)], engine)
    with pytest.raises(RecipeError, match="branch_factor"):
        run_strategy({**STRATEGY, "branch_factor": 6}, [make_problem(0)], engine)


def _mixed_run(
    hard: set[int], order: list[int], *, latency: float = 0.0, concurrency: int = 64
) -> dict[str, dict[str, object]]:
    problems = [make_problem(i) for i in order]
    hard_questions = {p.question for p in problems if int(p.id[1:]) in hard}
    engine = LearningEngine(
        HardSpotPolicy(hard_line=None, hard_questions=hard_questions), seconds_per_token=latency
    )
    strategy = {**STRATEGY, "max_paths": 3, "min_gap": 3, "borrow_limit": 4}
    results = run_strategy(strategy, problems, engine, concurrency=concurrency)
    out: dict[str, dict[str, object]] = {}
    for r in results:
        assert r.error is None and r.graph is not None
        assert r.usage["generated_tokens"] == generated_in_graph(r)
        out[r.problem_id] = {**r.detail, "graph": r.graph.to_dict(), "answer": r.answer}
    return out


def test_unused_paths_move_to_a_later_problem_that_branches() -> None:
    run = _mixed_run(hard={2}, order=[0, 1, 2])
    for easy in ("p0", "p1"):  # sure of every token: one path, two lent to the pool
        assert run[easy]["paths"] == 1 and run[easy]["unused_paths"] == 2
        assert run[easy]["borrowed_paths"] == 0
    hard = run["p2"]
    # Out of share after its own forks, it noted missed forks and borrowed for them (up to
    # the limit of 4 and the 4 lent), each borrowed path a late branch at a missed fork.
    assert hard["missed_forks"] and hard["borrowed_paths"] == 4
    assert hard["late_paths"] == 4 and hard["paths"] == 3 + 4
    assert hard["unused_paths"] == 0


def test_a_problem_borrows_only_what_earlier_problems_lent() -> None:
    run = _mixed_run(hard={0}, order=[0, 1, 2])
    assert run["p0"]["missed_forks"] and run["p0"]["borrowed_paths"] == 0  # nobody before it
    assert run["p0"]["paths"] == 3
    run = _mixed_run(hard={1, 2}, order=[0, 1, 2])
    assert run["p1"]["borrowed_paths"] == 2  # p0 lent two
    assert run["p2"]["borrowed_paths"] == 0  # p1 took them all


def test_reallocation_does_not_depend_on_timing_or_concurrency() -> None:
    def shape(run: dict[str, dict[str, object]]) -> dict[str, object]:
        def node(n: dict[str, object]) -> tuple[object, ...]:
            # aborted partial lengths depend on timing; everything else must not
            return (
                n["id"],
                n["status"],
                n["forced"],
                n["text"] if n["status"] != "aborted" else "",
            )

        return {
            pid: (
                d["answer"],
                d["borrowed_paths"],
                d["paths"],
                [node(n) for n in d["graph"]["nodes"]],  # type: ignore[index]
            )
            for pid, d in run.items()
        }

    baseline = shape(_mixed_run(hard={1, 3}, order=[0, 1, 2, 3]))
    assert shape(_mixed_run(hard={1, 3}, order=[0, 1, 2, 3], latency=3e-4)) == baseline
    assert shape(_mixed_run(hard={1, 3}, order=[0, 1, 2, 3], concurrency=1)) == baseline


def test_a_resumed_run_gives_later_problems_the_same_share() -> None:
    import asyncio

    from branchwise.orchestrator.recipe import parse_recipe
    from branchwise.orchestrator.runner import Orchestrator

    problems = [make_problem(i) for i in range(3)]
    strategy = {**STRATEGY, "max_paths": 3, "min_gap": 3, "borrow_limit": 4}
    recipe = parse_recipe(
        {"engine": {"kind": "scripted"}, "strategy": strategy, "sampling": {"max_tokens": 64}}
    )

    def engine() -> LearningEngine:
        hard = {problems[2].question}
        built = LearningEngine(HardSpotPolicy(hard_line=None, hard_questions=hard))
        teach(built, problems)
        return built

    async def go(finished: dict[str, dict[str, int]]) -> dict[str, ProblemResult]:
        async with Orchestrator(recipe, engine=engine()) as orchestrator:
            return {r.problem_id: r async for r in orchestrator.stream(problems, finished=finished)}

    whole = asyncio.run(go({}))
    assert whole["p0"].lending == {"lent": 2, "borrowed": 0}
    assert whole["p2"].lending == {"lent": 0, "borrowed": 4}
    # a crash after p0 and p1: the resumed run seats them with what they lent then
    stored = {pid: {"lent": 2, "borrowed": 0} for pid in ("p0", "p1")}
    resumed = asyncio.run(go(stored))
    assert list(resumed) == ["p2"]
    again, first = resumed["p2"], whole["p2"]
    assert again.graph is not None and first.graph is not None
    assert again.graph.to_dict() == first.graph.to_dict() and again.lending == first.lending


def test_a_fork_does_not_depend_on_whether_the_engine_had_finished() -> None:
    strategy = {**STRATEGY, "max_paths": 4, "min_gap": 3}

    def policy() -> LearningEngine:
        return LearningEngine(HardSpotPolicy(hard_line=1), error_rate=0.0)

    streamed = graph_shape(run_strategy(strategy, [make_problem(4)], policy()))
    whole = graph_shape(run_strategy(strategy, [make_problem(4)], WholeSampleEngine(policy())))
    assert whole == streamed
    assert any(status == "aborted" for _, status, _, _ in streamed)


@pytest.mark.parametrize("tokens", [20, 30, 60])
def test_a_problem_out_of_budget_lends_and_does_not_borrow(tokens: int) -> None:
    problems = [make_problem(0), make_problem(1)]
    engine = LearningEngine(HardSpotPolicy(hard_line=None, hard_questions={problems[1].question}))
    strategy = {**STRATEGY, "max_paths": 3, "min_gap": 3, "borrow_limit": 4}
    results = run_strategy(strategy, problems, engine, budget={"max_generated_tokens": tokens})
    easy, hard = results
    assert easy.lending == {"lent": 2, "borrowed": 0}
    assert hard.detail["missed_forks"] and hard.detail["borrowed_paths"] == 0
    assert hard.detail["late_paths"] == 0 and hard.usage["generated_tokens"] <= tokens


class SlowFirstEngine(LearningEngine):
    """Every request of one problem starts ``delay`` seconds late: a slow first problem."""

    def __init__(self, policy: HardSpotPolicy, slow: str, delay: float) -> None:
        super().__init__(policy)
        self.slow, self.delay = slow, delay

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        if request.affinity == self.slow:
            await asyncio.sleep(self.delay)
        async for result in super().stream(request):
            yield result


def test_a_slow_first_problem_holds_up_no_other() -> None:
    """12 problems, 4 at a time, borrowing on: p1-p3 want to borrow from p0, which is slow.

    They wait for the lending pass without their slots, so the eight problems after them
    run and finish before p0; what p1-p3 borrow is what they get when p0 is fast.
    """
    problems = [make_problem(i) for i in range(12)]
    hard = {p.question for p in problems[1:4]}
    strategy = {**STRATEGY, "max_paths": 3, "min_gap": 3, "borrow_limit": 4}
    recipe = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": strategy,
            "sampling": {"max_tokens": 64},
            "concurrency": 4,
        }
    )

    def run(delay: float) -> tuple[list[str], dict[str, ProblemResult]]:
        engine = SlowFirstEngine(HardSpotPolicy(None, hard), slow="p0", delay=delay)
        teach(engine, problems)

        async def go() -> list[ProblemResult]:
            async with Orchestrator(recipe, engine=engine) as orchestrator:
                return [r async for r in orchestrator.stream(problems)]

        results = asyncio.run(go())
        return [r.problem_id for r in results], {r.problem_id: r for r in results}

    order, slow = run(delay=0.5)
    assert set(order[: order.index("p0")]) == {f"p{i}" for i in range(4, 12)}
    assert order.index("p0") == 8 and set(order[9:]) == {"p1", "p2", "p3"}
    _, fast = run(delay=0.0)
    assert slow["p1"].lending == {"lent": 0, "borrowed": 2}  # the two p0 left unused
    for pid, result in fast.items():
        assert result.error is None and slow[pid].error is None
        assert slow[pid].lending == result.lending
        assert slow[pid].answer == result.answer
        assert slow[pid].detail == result.detail

"""Entropy-adaptive branching: forks exactly at uncertain tokens, from the exact prefix."""

from __future__ import annotations

import pytest

from orchestrator.errors import RecipeError
from tests.conftest import make_problem
from tests.unit.sampling_support import (
    HardSpotPolicy,
    LearningEngine,
    generated_in_graph,
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

"""Strategies on a reasoning model: budget forcing scales thinking sequentially; voting,
first-finish and DeepConf read answers after the end tag (scripted thinking model)."""

from __future__ import annotations

from typing import Any

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.results import ProblemResult
from tests.unit.test_reasoning import END, graph_of, path_thinking, solve, thinking_recipe


def accuracy(results: list[ProblemResult]) -> float:
    return sum(bool(r.correct) for r in results) / len(results)


def mean(results: list[ProblemResult], field: str) -> float:
    return sum(float(r.usage[field]) for r in results) / len(results)


def forcing(waits: int, **extra: Any) -> dict[str, Any]:
    return {"name": "budget_forcing", "waits": waits, **extra}


def test_each_wait_replaces_the_models_end_of_thinking_and_the_answer_follows_the_tag() -> None:
    [result] = solve(thinking_recipe(forcing(3), reasoning={}), problems=1)
    graph = graph_of(result)
    answer = graph.node(result.node_id or "")
    path = graph.path(answer.id)
    waits = [n for n in path if n.forced and n.text == "Wait"]
    assert len(waits) == result.detail["waits"] == 3
    text = graph.solution_text(answer.id)
    assert text.count(END) == 1 and text.index("Wait") < text.index(END)
    assert answer.terminal and answer.answer == result.answer is not None
    assert result.detail["thinking_tokens"] == path_thinking(graph, answer.id)


def test_the_cap_forces_the_end_tag_and_the_answer_is_written_after_it() -> None:
    [result] = solve(thinking_recipe(forcing(5, max_thinking_tokens=70), reasoning={}), 1)
    graph = graph_of(result)
    path = graph.path(result.node_id or "")[1:]
    forced_end = [n for n in path if n.forced and n.text == END]
    assert len(forced_end) == 1
    assert path_thinking(graph, forced_end[0].id) == 70 + len(END)
    assert path[-1].answer is not None


def test_the_budgets_thinking_cap_bounds_budget_forcing_below_its_own_cap() -> None:
    """A budget (or a server request's) cap under the strategy's own: the thinking stops
    at the budget's cap, never creeping past it a token per call."""
    recipe = thinking_recipe(
        forcing(5, max_thinking_tokens=192), reasoning={}, budget={"max_thinking_tokens": 40}
    )
    [result] = solve(recipe, 1)
    graph = graph_of(result)
    path = graph.path(result.node_id or "")[1:]
    forced_end = [n for n in path if n.forced and n.text == END]
    assert len(forced_end) == 1
    assert path_thinking(graph, forced_end[0].id) <= 40 + len(END)
    assert path[-1].answer is not None


def test_thinking_longer_answers_better_sequential_scaling() -> None:
    # the scripted model's answers go wrong less often after longer thinking (decay 0.7 a
    # line), and it plans 1-4 lines: waits lengthen the thinking and raise accuracy
    def run(waits: int) -> list[ProblemResult]:
        recipe = thinking_recipe(forcing(waits), reasoning={}, thinking={"lines": [1, 4]})
        recipe = recipe.model_copy(
            update={"engine": recipe.engine.model_copy(update={"error_rate": 0.6})}
        )
        return solve(recipe, problems=30)

    short, long = run(0), run(4)
    assert mean(long, "thinking_tokens") > 2 * mean(short, "thinking_tokens")
    assert accuracy(long) >= accuracy(short) + 0.3


def test_budget_forcing_needs_a_reasoning_format() -> None:
    with pytest.raises(RecipeError, match="budget_forcing scales a reasoning model's thinking"):
        thinking_recipe(forcing(1))


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "self_consistency", "n": 5},
        {"name": "first_finish", "n": 4},
        {"name": "deepconf", "n": 6, "keep_percent": 50},
        {"name": "deepconf", "mode": "online", "n": 6, "warmup": 3, "window": 8},
    ],
    ids=["self_consistency", "first_finish", "deepconf_offline", "deepconf_online"],
)
def test_answers_are_read_after_the_end_tag(strategy: dict[str, Any]) -> None:
    # the first number of a thinking trace is "1" (Check step 1); every answer read from the
    # whole text would be "1"
    first_number = {"method": "regex", "pattern": r"(\d+)"}
    recipe = thinking_recipe(strategy, reasoning={}, answer=first_number)
    results = solve(recipe, problems=3)
    for result in results:
        graph = graph_of(result)
        assert result.error is None and result.answer not in (None, "1")
        finished = [n for n in graph.nodes() if n.terminal and n.answer is not None]
        assert finished
        for node in finished:
            text = graph.solution_text(node.id)
            assert END in text and node.answer != "1" and not node.thinking_open
        assert result.usage["thinking_tokens"] > 0

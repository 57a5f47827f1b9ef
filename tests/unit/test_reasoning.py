"""Reasoning models: answers after the end tag, thinking marked and budgeted (s1 forcing)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from branchwise.core.errors import RecipeError
from branchwise.core.graph import SearchGraph
from branchwise.core.reasoning import ReasoningFormat, split_reasoning
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.recipe import Recipe, parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, teach

END = "</think>"


def thinking_recipe(
    strategy: dict[str, Any] | None = None,
    *,
    budget: dict[str, Any] | None = None,
    reasoning: dict[str, Any] | None = None,
    max_tokens: int = 400,
    answer: dict[str, Any] | None = None,
    thinking: dict[str, Any] | None = None,
) -> Recipe:
    data: dict[str, Any] = {
        "engine": {"kind": "scripted", "error_rate": 0.3, "thinking": thinking or {}},
        "strategy": strategy or {"name": "self_consistency", "n": 4},
        "sampling": {"max_tokens": max_tokens},
        "prompt": {"style": "chat"},
        "answer": answer or {"method": "answer_line"},
        "budget": budget or {},
    }
    if reasoning is not None:
        data["reasoning"] = reasoning
    return parse_recipe(data)


def solve(recipe: Recipe, problems: int = 2) -> list[ProblemResult]:
    engine = ScriptedEngine.from_config(recipe.engine)  # type: ignore[arg-type]
    batch = [make_problem(i) for i in range(problems)]
    teach(engine, batch)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(batch)

    return asyncio.run(go())


def graph_of(result: ProblemResult) -> SearchGraph:
    assert result.graph is not None, result.error
    return result.graph


def path_thinking(graph: SearchGraph, node_id: str) -> int:
    return sum(n.thinking_tokens for n in graph.path(node_id))


def test_split_reads_the_answer_after_the_first_end_tag() -> None:
    fmt = ReasoningFormat()
    split = split_reasoning("<think>\nmaybe 3\n</think>\nAnswer: 4", fmt)
    assert split.thinking == "<think>\nmaybe 3\n</think>" and split.answer == "\nAnswer: 4"
    assert split_reasoning("<think>\nstill going", fmt).answer is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "<t>", "end": "<t>"}, "equals reasoning.start"),
        ({"forced_end": "\n\n"}, "must contain the end tag"),
    ],
)
def test_a_bad_format_is_refused_naming_the_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        thinking_recipe(reasoning=fields)


def test_answers_come_from_after_the_end_tag_and_the_thinking_is_marked() -> None:
    # the first number of the text: "1" of "Check step 1" inside the thinking, a step
    # result after it
    first_number = {"method": "regex", "pattern": r"(\d+)"}
    with_format = solve(thinking_recipe(reasoning={}, answer=first_number))
    without = solve(thinking_recipe(answer=first_number))
    for result in without:
        assert {n.answer for n in graph_of(result).terminals()} == {"1"}
    for result in with_format:
        graph = graph_of(result)
        terminals = graph.terminals()
        assert len(terminals) == 4 and "1" not in {n.answer for n in terminals}
        for node in terminals:
            text = graph.solution_text(node.id)
            thinking = text[: text.index(END) + len(END)]
            # one token per character on the scripted engine: the count is exact
            assert node.thinking_tokens == len(thinking) and not node.thinking_open
            first = re.search(r"(\d+)", text[len(thinking) :])
            assert first is not None and node.answer == first.group(1)
        counted = sum(n.thinking_tokens for n in graph.nodes() if not n.forced)
        assert result.usage["thinking_tokens"] == counted > 0
        assert result.usage["thinking_tokens"] < result.usage["generated_tokens"]
        assert graph.to_dict()["nodes"][1]["thinking_tokens"] == terminals[0].thinking_tokens


def test_a_path_that_never_closes_its_thinking_has_no_answer_and_says_so() -> None:
    [result] = solve(thinking_recipe(reasoning={}, max_tokens=40), problems=1)
    graph = graph_of(result)
    assert result.answer is None
    for node in graph.children("r"):
        assert node.terminal and node.thinking_open and node.answer is None
        assert node.thinking_tokens == 40
        assert graph.state(node.id).error == "thinking never closed (no '</think>'): no answer"


def test_max_thinking_forces_the_end_tag_and_the_path_goes_on_to_its_answer() -> None:
    limit = 60
    [result] = solve(
        thinking_recipe(reasoning={}, budget={"max_thinking_tokens": limit}), problems=1
    )
    graph = graph_of(result)
    for terminal in graph.terminals():
        path = graph.path(terminal.id)[1:]
        thinking, forced, answer = path
        assert len(thinking.token_ids) == limit and thinking.thinking_open
        assert forced.forced and forced.text == END and not forced.thinking_open
        assert forced.generated_tokens == 0
        assert answer.terminal and answer.answer is not None and answer.thinking_tokens == 0
        assert path_thinking(graph, terminal.id) == limit + len(END)
    # forced tokens think but were not generated: usage counts only the sampled ones
    assert result.usage["thinking_tokens"] == limit * 4


def test_min_thinking_replaces_an_early_end_tag_by_the_continuation_word() -> None:
    floor = 250  # the scripted model's plans (1-6 check lines) end before this
    [result] = solve(
        thinking_recipe(reasoning={"continuation": "Wait"}, budget={"min_thinking_tokens": floor}),
        problems=1,
    )
    graph = graph_of(result)
    terminals = graph.terminals()
    assert len(terminals) == 4
    for terminal in terminals:
        text = graph.solution_text(terminal.id)
        assert text.count(END) == 1 and "Wait" in text
        assert path_thinking(graph, terminal.id) >= floor
        waits = [n for n in graph.path(terminal.id) if n.forced]
        assert waits and all(n.text == "Wait" and n.thinking_open for n in waits)
        assert terminal.answer is not None
    # each end tag taken off a path was generated and paid for: a pruned node holds it
    rejected = [n for n in graph.nodes() if graph.state(n.id).status == "pruned"]
    assert len(rejected) == sum(1 for n in graph.nodes() if n.forced)
    assert all(n.text == END and n.thinking_tokens == len(END) for n in rejected)
    in_graph = sum(n.generated_tokens for n in graph.nodes() if n.parent_id)
    assert result.usage["generated_tokens"] == in_graph
    assert result.usage["thinking_tokens"] == sum(
        n.thinking_tokens for n in graph.nodes() if not n.forced
    )


@pytest.mark.parametrize("field", ["max_thinking_tokens", "min_thinking_tokens"])
def test_a_thinking_budget_needs_a_reasoning_format(field: str) -> None:
    with pytest.raises(RecipeError, match=f"budget.{field}: .*no `reasoning` format"):
        thinking_recipe(budget={field: 10})


def test_a_thinking_budget_needs_an_engine_that_forces_tokens() -> None:
    with pytest.raises(RecipeError, match=r"budget\.max_thinking_tokens: forces the end tag"):
        parse_recipe(
            {
                "engine": {"kind": "openai", "model": "m", "base_urls": ["http://127.0.0.1:1"]},
                "strategy": {"name": "self_consistency", "n": 2},
                "reasoning": {},
                "budget": {"max_thinking_tokens": 10},
            }
        )


def test_min_above_max_is_refused() -> None:
    with pytest.raises(RecipeError, match="min_thinking_tokens: 20 is above"):
        thinking_recipe(reasoning={}, budget={"min_thinking_tokens": 20, "max_thinking_tokens": 10})


def test_a_thinking_budget_on_a_streaming_strategy_fails_the_problem_saying_why() -> None:
    recipe = thinking_recipe(
        {"name": "first_finish", "n": 2}, reasoning={}, budget={"max_thinking_tokens": 30}
    )
    [result] = solve(recipe, problems=1)
    assert result.answer is None and result.error is not None
    assert "do not apply to streamed samples" in result.error


def test_thinking_tokens_are_counted_on_a_real_byte_level_bpe() -> None:
    # the testbed's tokenizer has no <think> tokens: the tag is six byte-level pieces, and
    # the text around it merges ('.\n' is one token); the count still ends at the tag's end
    from pathlib import Path

    from transformers import AutoTokenizer

    from branchwise.core.reasoning import ReasoningTags

    folder = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    fmt = ReasoningFormat()

    def ids(text: str) -> tuple[int, ...]:
        return tuple(tokenizer.encode(text, add_special_tokens=False))

    tags = ReasoningTags(fmt, ids(fmt.end), ids(fmt.end), ids(fmt.continuation))
    thought, text = "7 + 15 = 22.\n", "22 - 4 = 18.\n</think>\n\nThe answer is \\boxed{18}."
    segment = ids(text)
    count, still_open = tags.segment(thought, text, segment)
    assert not still_open
    assert tokenizer.decode(segment[:count]) == "22 - 4 = 18.\n</think>"
    assert tags.segment(thought, "22 - 4 = 18.\n", ids("22 - 4 = 18.\n")) == (
        len(ids("22 - 4 = 18.\n")),
        True,
    )


def test_a_reasoning_format_and_thinking_budgets_are_part_of_the_fingerprint() -> None:
    plain = thinking_recipe()
    reasoning = thinking_recipe(reasoning={})
    budgeted = thinking_recipe(reasoning={}, budget={"max_thinking_tokens": 100})
    assert len({plain.fingerprint(), reasoning.fingerprint(), budgeted.fingerprint()}) == 3

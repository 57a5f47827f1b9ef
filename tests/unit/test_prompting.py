"""Prompts for chat models: rendered once per problem, then every path grows by token ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.prompting import ChatMessage, RenderedPrompt
from branchwise.orchestrator.recipe import load_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, scripted_recipe, teach

CHAT = {
    "style": "chat",
    "system": "Please reason step by step.",
    "few_shot": [{"question": "Start with 2. Add 3.", "answer": "2+3=5\nAnswer: 5"}],
}


class CountingEngine(ScriptedEngine):
    """Counts prompt renderings, to show each problem's prompt is rendered exactly once."""

    def __init__(self) -> None:
        super().__init__(error_rate=0.2)
        self.renders = 0

    async def tokenize_chat(
        self, messages: Sequence[ChatMessage], *, chat_template: str | None = None
    ) -> RenderedPrompt:
        self.renders += 1
        return await super().tokenize_chat(messages, chat_template=chat_template)


def _solve(prompt: dict[str, object], engine: ScriptedEngine, n: int = 4) -> list[ProblemResult]:
    strategy = {"name": "beam_search", "beam_width": 2, "expansions": 2, "scorer": "oracle"}
    recipe = scripted_recipe(
        strategy, prompt=prompt, scorers=[{"kind": "reference_steps", "name": "oracle"}]
    )
    problems = [make_problem(i) for i in range(n)]
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go())


def test_chat_prompt_is_rendered_once_and_paths_extend_its_ids() -> None:
    engine = CountingEngine()
    results = _solve(CHAT, engine)
    assert engine.renders == 4  # once per problem, however many nodes the search made
    for result in results:
        assert result.error is None and result.graph is not None
        root = result.graph.root
        assert root.text.startswith("<|im_start|>system\nPlease reason step by step.<|im_end|>\n")
        assert root.text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert "<|im_start|>assistant\n2+3=5\nAnswer: 5<|im_end|>" in root.text  # few-shot
    # every request the engine saw starts with one problem's rendered prompt ids, unchanged,
    # and continues with the exact ids of the nodes it extends (never re-rendered text)
    roots = [r.graph.root.token_ids for r in results if r.graph is not None]
    for request in engine.requests:
        assert any(request.prompt_token_ids[: len(ids)] == ids for ids in roots)
    for result in results:
        assert result.graph is not None
        for node in result.graph.nodes():
            if node.parent_id is not None:
                parent_ids = result.graph.full_token_ids(node.parent_id)
                sent = [q for q in engine.requests if q.prompt_token_ids == parent_ids]
                assert sent, f"no request extended {node.parent_id}'s exact ids"
    assert sum(bool(r.correct) for r in results) >= 3


def test_plain_and_chat_prompts_reach_the_same_answers_on_the_scripted_policy() -> None:
    plain = _solve({"template": "{question}\n"}, ScriptedEngine(error_rate=0.0))
    chat = _solve(CHAT, ScriptedEngine(error_rate=0.0))
    assert [r.answer for r in plain] == [r.answer for r in chat]
    assert all(r.correct for r in chat)


def test_chat_template_from_a_file_next_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "turns.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    (tmp_path / "r.yaml").write_text(
        "engine: {kind: scripted, error_rate: 0.0}\nstrategy: {name: self_consistency, n: 2}\n"
        "prompt: {style: chat, chat_template: turns.jinja}\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    engine = ScriptedEngine(error_rate=0.0)
    teach(engine, [make_problem(0)])

    async def go() -> ProblemResult:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.solve(make_problem(0))

    result = asyncio.run(go())
    assert result.graph is not None
    assert result.graph.root.text.startswith("[user] Start with")
    assert result.correct


def test_missing_chat_template_file_is_a_recipe_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "engine: {kind: scripted}\nstrategy: {name: self_consistency, n: 2}\n"
        "prompt: {style: chat, chat_template: nowhere.jinja}\n"
    )
    from branchwise.orchestrator.validation import check_resources

    with pytest.raises(RecipeError, match=r"nowhere\.jinja"):
        check_resources(load_recipe(tmp_path / "r.yaml"))

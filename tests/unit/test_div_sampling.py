"""DivSampling: per-sample prompt perturbations raise coverage where samples collapse."""

from __future__ import annotations

import asyncio
import random
import zlib
from pathlib import Path

from branchwise.core.port import PromptVariant
from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.orchestrator.prompting import PromptSpec, render_variant
from tests.conftest import make_problem
from tests.unit.sampling_support import run_strategy

ANSWERS = ("1", "2", "3", "4", "5", "6")


class ModePolicy:
    """A collapsed sampler: for a given prompt it writes one answer (picked by the prompt's
    hash) 90 % of the time, any answer otherwise; it records the prompts it saw."""

    def __init__(self) -> None:
        self.prompts: set[str] = set()

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        self.prompts.add(prompt)
        mode = ANSWERS[zlib.crc32(prompt.encode()) % len(ANSWERS)]
        answer = mode if rng.random() < 0.9 else rng.choice(ANSWERS)
        body = f"so it is {answer}\nAnswer: {answer}" + EOS
        return Continuation(body, (-0.1,) * len(body))


PROBLEMS = [make_problem(i) for i in range(24)]


def _coverage(strategy: dict[str, object]) -> tuple[float, float, ModePolicy]:
    """Share of problems with some sample answering "6", and mean distinct answers."""
    policy = ModePolicy()
    results = run_strategy(strategy, PROBLEMS, ScriptedEngine(policy))
    covered, distinct = 0, 0
    for result in results:
        assert result.graph is not None
        answers = {n.answer for n in result.graph.terminals()}
        covered += "6" in answers
        distinct += len(answers)
    return covered / len(results), distinct / len(results), policy


def test_perturbations_raise_coverage_at_equal_k() -> None:
    plain_cover, plain_distinct, _ = _coverage(
        {"name": "div_sampling", "n": 8, "perturbations": ["none"]}
    )
    div_cover, div_distinct, policy = _coverage({"name": "div_sampling", "n": 8})
    assert div_distinct > plain_distinct + 1.5
    assert div_cover >= plain_cover + 0.3
    # the variants reached the engine: many more distinct prompts than problems
    assert len(policy.prompts) > 3 * len(PROBLEMS)


def test_samples_carry_their_variant_and_the_prompt_holds_its_text() -> None:
    policy = ModePolicy()
    [result] = run_strategy(
        {"name": "div_sampling", "n": 6, "perturbations": ["approach"], "approaches": ["Go!"]},
        PROBLEMS[:1],
        ScriptedEngine(policy),
    )
    assert result.graph is not None
    samples = result.graph.children("r")
    assert len(samples) == 6 and {n.prompt_variant for n in samples} == {"approach:0"}
    assert result.detail["variants"] == 1
    [prompt] = policy.prompts
    assert prompt.startswith(PROBLEMS[0].question + "\n\nGo!")
    dumped = result.graph.to_dict()["nodes"]
    assert isinstance(dumped, list) and dumped[1]["prompt_variant"] == "approach:0"
    assert "prompt_variant" not in dumped[0]


def test_variants_render_into_the_system_prompt_or_after_the_question() -> None:
    engine = ScriptedEngine()
    variant = PromptVariant("v", system="Be a teacher.", question="Try another way.")

    async def render(spec: PromptSpec) -> str:
        rendered = await render_variant(spec, "What is 2+2?", variant, engine, Path("."))
        assert rendered.token_ids == await engine.tokenize(rendered.text)
        return rendered.text

    plain = asyncio.run(render(PromptSpec()))
    assert plain == "Be a teacher.\n\nWhat is 2+2?\n\nTry another way.\n"
    chat = asyncio.run(render(PromptSpec(style="chat", system="Box the answer.")))
    assert "Be a teacher.\n\nBox the answer." in chat
    assert "What is 2+2?\n\nTry another way." in chat

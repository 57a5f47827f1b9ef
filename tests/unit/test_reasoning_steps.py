"""Search inside the thinking: steps split within it, and each scorer reads its part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from pydantic import Field

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.reasoning import Reads, ReasoningFormat, read_steps
from branchwise.core.scorers import SCORERS, Candidate, Scorer, ScorerConfig
from branchwise.orchestrator.prompting import CHATML_TEMPLATE
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.rewards.rm_config import RewardModelConfig
from tests.unit.test_reasoning import END, graph_of, solve

# an R1-style template: the generation prompt opens the thinking
R1_TEMPLATE = CHATML_TEMPLATE.replace("assistant\n{% endif %}", "assistant\n<think>\n{% endif %}")
STEPS = ("<think>\n", "Check 1.\n", "Check 2.\n</think>\n", "1+1=2\n", "Answer: 2")


def test_read_steps_keeps_the_part_each_reader_asks_for() -> None:
    fmt = ReasoningFormat()
    assert read_steps(STEPS, fmt, "all") == STEPS
    assert read_steps(STEPS, fmt, "thinking") == ("Check 1.\n", "Check 2.\n")
    assert read_steps(STEPS, fmt, "answer") == ("\n", "1+1=2\n", "Answer: 2")[1:]
    still_thinking = STEPS[:2]
    assert read_steps(still_thinking, fmt, "answer") == ()
    assert read_steps(still_thinking, fmt, "thinking") == ("Check 1.\n",)


@pytest.mark.parametrize(
    ("fmt", "reads"), [("qwen_prm", "thinking"), ("sequence_classify", "answer")]
)
def test_each_reward_format_states_what_it_reads_and_a_recipe_may_change_it(
    fmt: str, reads: str
) -> None:
    kind = "prm" if reads == "thinking" else "orm"
    base = {"kind": kind, "format": fmt, "model": "m"}
    assert RewardModelConfig.model_validate(base).reads == reads
    assert RewardModelConfig.model_validate({**base, "reads": "all"}).reads == "all"


class ReadingConfig(ScorerConfig):
    kind: str = "test_reading"
    reads: Reads = Field("thinking", description="The part of a reasoning path it reads.")


class Reading(Scorer[ReadingConfig]):
    """Test-only: one value per step, and a record of every step it was shown."""

    description = "Test-only: records the steps it reads."
    config_model: ClassVar[type[ScorerConfig]] = ReadingConfig
    step_level = True
    seen: ClassVar[list[tuple[str, ...]]] = []

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        Reading.seen.extend(c.steps for c in candidates)
        return [
            Score(value=1.0 if c.steps else None, step_values=(1.0,) * len(c.steps))
            for c in candidates
        ]


if "test_reading" not in SCORERS.names():
    SCORERS.register("test_reading", Reading)


def beam(reads: str) -> dict[str, Any]:
    return {
        "engine": {"kind": "scripted", "error_rate": 0.3, "thinking": {}},
        "strategy": {"name": "beam_search", "beam_width": 2, "expansions": 2, "scorer": "reader"},
        "scorers": [{"kind": "test_reading", "name": "reader", "reads": reads}],
        "sampling": {"max_tokens": 400},
        "prompt": {"style": "chat", "chat_template": R1_TEMPLATE},
        "answer": {"method": "answer_line"},
        "reasoning": {},
        "step_delimiter": "\n",
    }


def test_a_step_search_splits_the_thinking_into_steps_and_scores_the_thinking() -> None:
    Reading.seen.clear()
    [result] = solve(parse_recipe(beam("thinking")), problems=1)
    graph = graph_of(result)
    # steps inside the thinking: nodes of one line each, still thinking
    inside = [n for n in graph.nodes() if n.parent_id and n.thinking_open]
    assert len(inside) >= 4 and all(n.text.count("\n") <= 1 for n in inside)
    assert result.answer is not None
    assert Reading.seen
    for steps in Reading.seen:
        text = "".join(steps)
        assert steps and END not in text and "<think>" not in text and "Answer:" not in text
        assert "Check step" in text


def test_a_scorer_reading_the_answer_sees_only_the_text_after_the_end_tag() -> None:
    Reading.seen.clear()
    data = beam("answer")
    data["strategy"] = {"name": "best_of_n", "n": 4, "scorer": "reader"}
    [result] = solve(parse_recipe(data), problems=1)
    assert result.answer is not None and len(Reading.seen) == 4
    for steps in Reading.seen:
        text = "".join(steps)
        assert "Answer:" in text and "Check step" not in text and END not in text

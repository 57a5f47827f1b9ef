"""Thinking traces for the reasoning testbed: shape, determinism and calibration."""

from __future__ import annotations

import re

import reasoning_task as rt  # examples/testbed is put on sys.path by conftest.py
import task

from branchwise.core.reasoning import ReasoningFormat, split_reasoning
from branchwise.verifiers.answers import AnswerSpec, extract_answer

FORMAT = ReasoningFormat()
BOXED = AnswerSpec(method="boxed")
PROBLEMS = task.make_splits(seed=0, sizes={"eval": 10, "val": 10, "train": 2000})["train"]


def answer_of(trace: str) -> str | None:
    after = split_reasoning(trace, FORMAT).answer
    return extract_answer(after, BOXED) if after is not None else None


def test_a_trace_thinks_closes_once_and_answers_from_its_last_value() -> None:
    for problem in PROBLEMS[:200]:
        trace = rt.traced_solution(problem, seed=0)
        thinking = split_reasoning(trace, FORMAT).thinking
        assert trace.count(rt.THINK_END) == 1 and rt.THINK_START not in trace
        last = re.findall(r"(?:= |it is )(\d+)\.", thinking)[-1]
        assert answer_of(trace) == last
        assert trace == rt.traced_solution(problem, seed=0)  # deterministic


def test_checking_and_rechecking_repair_slips_and_early_answers_keep_them() -> None:
    outcomes: dict[str, list[bool]] = {"early": [], "checked": [], "rechecked": []}
    for problem in PROBLEMS:
        trace = rt.traced_solution(problem, seed=1)
        right = answer_of(trace) == problem.answer
        if "Wait, let me check." in trace:
            outcomes["rechecked"].append(right)
        elif "Check:" not in trace:
            outcomes["early"].append(right)
        else:
            outcomes["checked"].append(right)
    rate = {kind: sum(v) / len(v) for kind, v in outcomes.items()}
    assert rate["rechecked"] == 1.0
    assert rate["early"] < rate["checked"] < 1.0
    assert 0.5 < rate["early"] < 0.8  # 1 - 0.15 per step, 2-4 steps

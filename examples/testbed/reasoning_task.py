"""Thinking traces for a reasoning variant of the testbed policy (issue 23, target 6).

The reasoning testbed answers the same problems (``task.py``) in the shape of R1/Qwen3: the
chat template opens the thinking (``<|im_start|>assistant\\n<think>\\n``), the model works the
chain step by step, may check a result by the inverse operation, may slip and notice it
("Wait, ...") and redo the step, then closes the thinking and writes a short answer:

    7 + 15 = 22.

    Check: 22 - 15 = 7. Right.

    22 - 4 = 17.

    Check: 17 + 4 = 21, not 22. Wait, 22 - 4 = 18.

    18 * 3 = 54.
    </think>

    The answer is \\boxed{54}.

Calibration, so that thinking longer helps and the model sometimes answers too early:
``slip_rate`` of the steps are first written wrong; a checked step (``check_rate``) catches its
slip and redoes it; with ``early_rate`` a trace checks nothing and closes right after the last
step, so its slips stay and its answer is wrong; and a trace may end with "Wait, let me check."
(written where the end tag would have stood, as budget forcing writes its "Wait") followed by
checks of the whole chain, which repair any slip left. Traces are a training target, so the
answer after the tag is always the last value the thinking reached (right or wrong): the model
learns to answer from its thinking.

The committed reasoning testbed trains on another style (``train_reasoning.py``: no checks
between steps, no early closes, a re-check in half of the traces): checks between the steps
broke the policy's arithmetic (examples/testbed/README.md says what was tried).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from task import STEP_DELIMITER, Problem, Step, answer_step

THINK_START, THINK_END = "<think>", "</think>"
WAIT = "Wait, let me check."


@dataclass(frozen=True, kw_only=True)
class TraceStyle:
    """How often a trace slips, checks, closes early, or re-checks after a 'Wait'."""

    slip_rate: float = 0.15
    check_rate: float = 0.5
    early_rate: float = 0.3
    recheck_rate: float = 0.3


def _apply(op: str, left: int, operand: int) -> int:
    ops = {"+": left + operand, "-": left - operand, "*": left * operand}
    return ops[op] if op in ops else left // operand


def _slipped(step: Step, rng: random.Random) -> int:
    """A wrong result near the right one (never negative)."""
    wrong = step.result + rng.choice([-10, -2, -1, 1, 2, 10])
    return wrong if wrong >= 0 else step.result + 1


def _check(step: Step, written: int) -> tuple[str, bool]:
    """A re-computation of ``step`` against the result written, and whether they agree."""
    head = f"Check: {step.left} {step.op} {step.operand} = {step.result}"
    if written == step.result:
        return f"{head}. Right.", True
    return f"{head}, not {written}. Wait, so it is {step.result}.", False


def thinking_trace(problem: Problem, rng: random.Random, style: TraceStyle) -> str:
    """The assistant turn after ``<think>\\n``: thinking, the end tag, the short answer."""
    early = rng.random() < style.early_rate
    parts: list[str] = []
    value = problem.steps[0].left
    for step in problem.steps:
        true = Step(
            op=step.op,
            operand=step.operand,
            left=value,
            result=_apply(step.op, value, step.operand),
        )
        result = _slipped(true, rng) if rng.random() < style.slip_rate else true.result
        parts.append(f"{value} {step.op} {step.operand} = {result}.")
        if not early and rng.random() < style.check_rate:
            text, _ = _check(true, result)
            parts.append(text)
            result = true.result
        value = result
    thinking = STEP_DELIMITER.join(parts)
    if not early and rng.random() < style.recheck_rate:
        # "Wait" stands where the end tag would have come (after the last step's "\n"), as
        # budget forcing writes it, so a forced "Wait" continues a learnt pattern.
        again: list[str] = []
        value = _recheck(problem, again)
        thinking += f"\n{WAIT}{STEP_DELIMITER}" + STEP_DELIMITER.join(again)
    return f"{thinking}\n{THINK_END}{STEP_DELIMITER}{answer_step(value)}"


def _recheck(problem: Problem, parts: list[str]) -> int:
    """Checks of the whole chain from the question (what a 'Wait' asks for); returns the
    value it ends on, every slip repaired."""
    value = problem.steps[0].left
    for step in problem.steps:
        result = _apply(step.op, value, step.operand)
        parts.append(f"{value} {step.op} {step.operand} = {result}. Right.")
        value = result
    return value


def traced_solution(problem: Problem, seed: int, style: TraceStyle | None = None) -> str:
    """The training target of one problem (deterministic in ``seed`` and the problem id)."""
    rng = random.Random(f"{seed}:{problem.id}")
    return thinking_trace(problem, rng, style or TraceStyle())

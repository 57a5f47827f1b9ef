"""What the PRM is taught: labelled PRM inputs from policy samples and from perturbed solutions.

A labelled example is the PRM input (`prm_model.prm_input`) as token ids with a label per token:

- at each `<extra_0>`: the exact checker's verdict for the step before it (prefix correctness);
- optionally (dense labels) at each one-digit token whose prefix is still a prefix of a correct
  solution: 1 iff the written digit is the one that belongs there, so the PRM learns at which
  digit a step goes wrong; such a token also gets a correct-digit target (which digit belongs
  there), which the trainer teaches through a temporary head;
- elsewhere: ignored.

Why digits: the policy's slips are wrong result digits, and a causal model does not judge the
token it reads (at position t a language model only predicts token t+1). With the right digit
held in the state at t next to the written one, the comparison is local, and the labels at the
first wrong digit put the whole weight of the dense loss on it (labels after an error, which
need the comparison first, are left to the step tags).

Perturbed solutions (`perturbed_solution`) are the reference solution with one deliberate slip of a
kind a small policy makes (a wrong result digit, a wrong operand copied, the wrong operation, a
wrong value carried over, a wrong boxed answer), the chain then continued from the wrong value.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bpe_tokenizer import IM_START, STEP_TAG
from prm_model import prm_input
from task import STEP_DELIMITER, Problem, answer_step
from transformers import PreTrainedTokenizerBase

from branchwise.verifiers.arithmetic_steps import (
    apply_operation,
    check_steps,
    parse_question,
    parse_steps,
)

IGNORE = -100
PERTURBATIONS: tuple[str, ...] = ("result", "operand", "operation", "carry", "answer")
# A small policy's slips are mostly wrong result digits: draw that kind half of the time.
PERTURBATION_WEIGHTS: tuple[int, ...] = (4, 1, 1, 1, 1)


@dataclass(frozen=True, kw_only=True)
class Example:
    """Token ids of one PRM input, a label per token, and whether the final answer is right."""

    ids: list[int]
    labels: list[int]
    solved: bool
    digit_targets: list[int]


DIGITS = "0123456789"


def correct_forms(question: str) -> list[list[str]]:
    """Per step, the texts the checker accepts (`+` and `*` in either order), answer step last."""
    chain = parse_question(question)
    value, forms = chain.start, []
    for op, operand in chain.operations:
        result = apply_operation(value, op, operand)
        assert result is not None
        texts = [f"{value} {op} {operand} = {result}."]
        if op in "+*" and operand != value:
            texts.append(f"{operand} {op} {value} = {result}.")
        forms.append(texts)
        value = result
    forms.append([answer_step(value)])
    return forms


def label_tokens(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    steps: Sequence[str],
    verdicts: Sequence[bool],
    *,
    dense: bool,
) -> tuple[list[int], list[int], list[int]]:
    """Ids of the PRM input, per-token labels and correct-digit targets (module docstring)."""
    text = prm_input(question, steps)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    offsets: list[tuple[int, int]] = encoded["offset_mapping"]
    tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
    labels = [IGNORE] * len(ids)
    digit_targets = [IGNORE] * len(ids)
    tag_positions = [i for i, t in enumerate(ids) if t == tag]
    for position, ok in zip(tag_positions, verdicts, strict=True):
        labels[position] = int(ok)
    if dense:
        forms = correct_forms(question)
        marker = f"{IM_START}assistant\n"
        body = text.index(marker) + len(marker)
        spans, cursor = [], body
        for step in steps:
            spans.append((cursor, cursor + len(step)))
            cursor += len(step) + len(STEP_TAG)
        step_index, prior_ok = 0, True
        for position, (start, end) in enumerate(offsets):
            while step_index < len(spans) and start >= spans[step_index][1]:
                prior_ok = prior_ok and step_index < len(verdicts) and verdicts[step_index]
                step_index += 1
            if step_index >= len(spans) or start < spans[step_index][0] or ids[position] == tag:
                continue
            span_start = spans[step_index][0]
            written = text[span_start:end]
            allowed = forms[step_index] if step_index < len(forms) else []
            # Dense labels and correct-digit targets only at one-digit tokens whose prefix is
            # right: the label says whether the written digit is the one that belongs there.
            before = written[:-1]
            if not (prior_ok and len(written) == len(before) + 1 and written[-1] in DIGITS):
                continue
            for form in allowed:
                if form.startswith(before) and len(form) > len(before):
                    if form[len(before)] in DIGITS:
                        digit_targets[position] = DIGITS.index(form[len(before)])
                        labels[position] = int(any(f.startswith(written) for f in allowed))
                    break
    return ids, labels, digit_targets


def make_example(
    tokenizer: PreTrainedTokenizerBase,
    problem: dict[str, str],
    solution: str,
    *,
    dense: bool,
) -> Example | None:
    """A labelled example from a solution text; None if it has no step."""
    steps = parse_steps(solution)
    if not steps:
        return None
    verdicts = check_steps(problem, solution)
    ids, labels, digits = label_tokens(tokenizer, problem["question"], steps, verdicts, dense=dense)
    solved = len(verdicts) > 0 and verdicts[-1] and _is_answer(steps[-1])
    return Example(ids=ids, labels=labels, solved=solved, digit_targets=digits)


def _is_answer(step: str) -> bool:
    return "\\boxed{" in step


def perturbed_solution(problem: Problem, rng: random.Random) -> str:
    """The reference solution with one slip (kind drawn from PERTURBATIONS), continued after it."""
    chain = [(s.op, s.operand) for s in problem.steps]
    kind = rng.choices(PERTURBATIONS, weights=PERTURBATION_WEIGHTS)[0]
    at = rng.randrange(len(chain))
    value = problem.steps[0].left
    texts: list[str] = []
    for i, (op, operand) in enumerate(chain):
        left, right, use_op = value, operand, op
        if i == at and kind == "operand":
            right = _nudge(rng, operand, ops_operand=op in "*/")
        elif i == at and kind == "operation":
            use_op = {"+": "-", "-": "+", "*": "/", "/": "*"}[op]
        elif i == at and kind == "carry":
            left = _nudge(rng, value, ops_operand=False)
        result = apply_operation(left, use_op, right)
        if result is None:  # the slip left the integers: write it anyway, wrongly
            result = abs(left - right) if use_op == "-" else left * right
        if i == at and kind == "result":
            result = _nudge(rng, result, ops_operand=False)
        texts.append(f"{left} {use_op} {right} = {result}.")
        value = result
    final = value
    if kind == "answer":
        final = _nudge(rng, value, ops_operand=False)
    texts.append(answer_step(final))
    return STEP_DELIMITER.join(texts)


def _nudge(rng: random.Random, number: int, *, ops_operand: bool) -> int:
    """A different non-negative number a slip could produce."""
    if ops_operand:
        return 5 - number if number in (2, 3) else number + 1
    digits = list(str(number))
    for _ in range(10):
        choice = rng.random()
        if choice < 0.4:
            candidate = number + rng.choice((-2, -1, 1, 2))
        elif choice < 0.6:
            candidate = number + rng.choice((-10, 10))
        else:
            index = rng.randrange(len(digits))
            changed = digits.copy()
            changed[index] = str(rng.choice([d for d in range(10) if str(d) != digits[index]]))
            candidate = int("".join(changed))
        if candidate >= 0 and candidate != number:
            return candidate
    return number + 1

"""Seeded generator of multi-step arithmetic word problems for the bundled testbed.

A problem is a start value followed by a chain of operations, each told as one short sentence:

    Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?

and its solution is written one operation per step, steps separated by a blank line (`"\n\n"`),
the last step giving the answer in `\boxed{}` (the format of Qwen2.5-Math's chat models):

    7 + 15 = 22.

    22 - 4 = 18.

    18 * 3 = 54.

    The answer is \boxed{54}.

The policy is prompted with the ChatML chat template (`bpe_tokenizer.render_prompt`). Every
number stays a non-negative integer (subtraction never goes below zero, division only when exact)
and the whole text stays short. Difficulty is the number of steps and the range of the
operands. Splits never share a question text. Run as a script to write the JSONL files:

    python examples/testbed/task.py --out examples/testbed/data
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from branchwise.orchestrator.help_format import HelpWithDefaults

NAMES: tuple[tuple[str, str], ...] = (
    ("Ann", "She"), ("Bob", "He"), ("Cal", "He"), ("Dan", "He"), ("Eve", "She"),
    ("Fay", "She"), ("Gus", "He"), ("Ivy", "She"), ("Jon", "He"), ("Kim", "She"),
    ("Leo", "He"), ("Mia", "She"), ("Ned", "He"), ("Pam", "She"), ("Ray", "He"),
    ("Sue", "She"), ("Tom", "He"), ("Una", "She"), ("Val", "She"), ("Zed", "He"),
)  # fmt: skip
ITEMS: tuple[str, ...] = (
    "apples", "pens", "eggs", "coins", "cards", "rocks", "shells", "beads", "books", "cups",
)  # fmt: skip

# Sentence templates per operation; "{p}" is the pronoun, "{n}" the operand.
ADD_PHRASES: tuple[str, ...] = ("{p} gets {n} more.", "{p} buys {n} more.", "{p} finds {n} more.")
SUB_PHRASES: tuple[str, ...] = ("{p} loses {n}.", "{p} gives away {n}.", "{p} sells {n}.")
# Multiplication and division are told in words, so the model must map words to operands.
MUL_PHRASES: dict[int, str] = {2: "{p} doubles them.", 3: "{p} triples them."}
DIV_PHRASES: dict[int, str] = {2: "{p} halves them.", 3: "{p} keeps a third."}

MAX_VALUE = 999
# Length budget of a problem, counted in the compact form of the first testbed (`7+15=22` lines and
# `Answer: N`): kept so the splits hold the same problems under the same ids as before.
MAX_CHARS = 160
STEP_DELIMITER = "\n\n"
SPLIT_SIZES: dict[str, int] = {"eval": 600, "val": 300, "train": 60_000}
SPLIT_ORDER: tuple[str, ...] = ("eval", "val", "train")


@dataclass(frozen=True, kw_only=True)
class Difficulty:
    """How hard a problem is: the number of steps and the largest added/subtracted operand."""

    steps: int
    max_operand: int


# Problems are drawn from this mix, so every split spans easy to hard.
DIFFICULTIES: tuple[Difficulty, ...] = tuple(
    Difficulty(steps=s, max_operand=m) for s in (2, 3, 4) for m in (20, 50, 99)
)


@dataclass(frozen=True, kw_only=True)
class Step:
    """One operation of the chain: `left op operand = result`."""

    op: str
    operand: int
    left: int
    result: int

    @property
    def text(self) -> str:
        """This step as written in a solution, without the delimiter after it."""
        return f"{self.left} {self.op} {self.operand} = {self.result}."

    @property
    def compact(self) -> str:
        """The first testbed's form of the step (`7+15=22`), used for the length budget."""
        return f"{self.left}{self.op}{self.operand}={self.result}"


def answer_step(answer: int | str) -> str:
    """The final step of a solution."""
    return f"The answer is \\boxed{{{answer}}}."


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A generated problem with its question text and worked solution."""

    id: str
    question: str
    steps: tuple[Step, ...]

    @property
    def answer(self) -> str:
        return str(self.steps[-1].result)

    @property
    def step_texts(self) -> list[str]:
        """The solution's steps, the answer step last."""
        return [*(s.text for s in self.steps), answer_step(self.answer)]

    @property
    def solution(self) -> str:
        """What the policy learns to write as the assistant turn (before `<|im_end|>`)."""
        return STEP_DELIMITER.join(self.step_texts)

    @property
    def compact_length(self) -> int:
        """Characters of question + newline + compact solution: the split's length budget."""
        lines = "".join(s.compact + "\n" for s in self.steps)
        return len(self.question) + 1 + len(lines) + len(f"Answer: {self.answer}")

    def to_record(self) -> dict[str, str]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "solution": self.solution,
        }

    def to_gsm8k(self) -> dict[str, str]:
        """GSM8K form: worked steps, then `#### <number>`."""
        lines = "".join(s.text + "\n" for s in self.steps)
        return {"question": self.question, "answer": f"{lines}#### {self.answer}"}


def _next_step(rng: random.Random, value: int, difficulty: Difficulty) -> tuple[Step, str]:
    """Pick an operation that keeps the value a non-negative integer within MAX_VALUE."""
    choices: list[str] = ["add"]
    if value >= 1:
        choices.append("sub")
    if value * 2 <= MAX_VALUE:
        choices.append("mul")
    if value >= 2 and (value % 2 == 0 or value % 3 == 0):
        choices.append("div")
    kind = rng.choice(choices)
    if kind == "add":
        n = rng.randint(1, min(difficulty.max_operand, MAX_VALUE - value))
        return Step(op="+", operand=n, left=value, result=value + n), rng.choice(ADD_PHRASES)
    if kind == "sub":
        n = rng.randint(1, min(difficulty.max_operand, value))
        return Step(op="-", operand=n, left=value, result=value - n), rng.choice(SUB_PHRASES)
    if kind == "mul":
        factors = [k for k in MUL_PHRASES if value * k <= MAX_VALUE]
        k = rng.choice(factors)
        return Step(op="*", operand=k, left=value, result=value * k), MUL_PHRASES[k]
    divisors = [k for k in DIV_PHRASES if value % k == 0]
    k = rng.choice(divisors)
    return Step(op="/", operand=k, left=value, result=value // k), DIV_PHRASES[k]


def make_problem(rng: random.Random, difficulty: Difficulty, problem_id: str) -> Problem:
    """Draw one problem of the given difficulty."""
    name, pronoun = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    value = rng.randint(2, difficulty.max_operand)
    sentences = [f"{name} has {value} {item}."]
    steps: list[Step] = []
    for _ in range(difficulty.steps):
        step, phrase = _next_step(rng, value, difficulty)
        sentences.append(phrase.format(p=pronoun, n=step.operand))
        steps.append(step)
        value = step.result
    sentences.append(f"How many {item} now?")
    return Problem(id=problem_id, question=" ".join(sentences), steps=tuple(steps))


def iter_unique_problems(seed: int, prefix: str = "p") -> Iterator[Problem]:
    """Endless stream of problems with distinct question texts that fit in MAX_CHARS."""
    rng = random.Random(seed)
    seen: set[str] = set()
    index = 0
    while True:
        difficulty = rng.choice(DIFFICULTIES)
        problem = make_problem(rng, difficulty, f"{prefix}{index}")
        if problem.question in seen or problem.compact_length > MAX_CHARS:
            continue
        seen.add(problem.question)
        index += 1
        yield problem


def make_splits(seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, list[Problem]]:
    """Cut one deduplicated stream into eval, val and train, so no question is in two splits.

    Eval comes first, so its content does not depend on the train size.
    """
    sizes = dict(SPLIT_SIZES if sizes is None else sizes)
    stream = iter_unique_problems(seed)
    splits: dict[str, list[Problem]] = {}
    for split in SPLIT_ORDER:
        drawn = [next(stream) for _ in range(sizes.get(split, 0))]
        splits[split] = [
            Problem(id=f"{split}-{i}", question=p.question, steps=p.steps)
            for i, p in enumerate(drawn)
        ]
    return splits


def write_jsonl(path: Path, records: Sequence[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_splits(out: Path, splits: dict[str, list[Problem]]) -> None:
    """Write `{split}.jsonl` and `gsm8k/{split}.jsonl` for every split."""
    for split, problems in splits.items():
        write_jsonl(out / f"{split}.jsonl", [p.to_record() for p in problems])
        write_jsonl(out / "gsm8k" / f"{split}.jsonl", [p.to_gsm8k() for p in problems])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults, description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    for split in SPLIT_ORDER:
        parser.add_argument(f"--{split}-size", type=int, default=SPLIT_SIZES[split])
    args = parser.parse_args(argv)
    sizes = {split: getattr(args, f"{split}_size") for split in SPLIT_ORDER}
    splits = make_splits(args.seed, sizes)
    write_splits(args.out, splits)
    print(" ".join(f"{k}={len(v)}" for k, v in splits.items()), "->", args.out)


if __name__ == "__main__":
    main()

"""Carve the held-back test split: the next problems of the seeded stream after train.

The eval split steered decisions (the PRM's training stages, the particle filter's final
choice), so the benchmark's final numbers need problems nothing was chosen on. They come from
the same deduplicated stream as every other split (``task.make_splits``), drawn right after
the 60,000 train problems the committed policy and PRM were trained on: no question is in two
splits, and the same seed writes the same file. Only the final benchmark run reads it
(``benchmarks/strategies.py --split test --final``).

    python examples/testbed/make_test_split.py [--size 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

from task import (
    SPLIT_ORDER,
    SPLIT_SIZES,
    Problem,
    iter_unique_problems,
    make_splits,
    read_jsonl,
    write_jsonl,
)

from branchwise.orchestrator.help_format import HelpWithDefaults

DATA = Path(__file__).resolve().parent / "data"


def test_split(seed: int, size: int) -> list[Problem]:
    """The ``size`` problems after eval, val and train (default sizes) in the seeded stream."""
    stream = iter_unique_problems(seed)
    for _ in range(sum(SPLIT_SIZES[split] for split in SPLIT_ORDER)):
        next(stream)
    drawn = [next(stream) for _ in range(size)]
    return [
        Problem(id=f"test-{i}", question=p.question, steps=p.steps) for i, p in enumerate(drawn)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults, description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=600)
    args = parser.parse_args(argv)
    problems = test_split(args.seed, args.size)
    # Checked, not assumed: the committed eval/val files and the train split the trainers draw.
    seen = {p.question for split in make_splits(args.seed).values() for p in split}
    seen |= {
        r["question"] for split in ("eval", "val") for r in read_jsonl(DATA / f"{split}.jsonl")
    }
    shared = [p.id for p in problems if p.question in seen]
    if shared:
        raise SystemExit(f"test problems also in train/eval/val: {shared[:5]}; the stream changed")
    write_jsonl(args.out / "test.jsonl", [p.to_record() for p in problems])
    write_jsonl(args.out / "gsm8k" / "test.jsonl", [p.to_gsm8k() for p in problems])
    digest = hashlib.sha256((args.out / "test.jsonl").read_bytes()).hexdigest()
    print(f"test={len(problems)} -> {args.out / 'test.jsonl'} (sha256 {digest})")


if __name__ == "__main__":
    main()

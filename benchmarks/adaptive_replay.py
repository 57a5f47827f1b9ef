"""Why adaptive self-consistency does or does not save tokens here: its stopping rules replayed.

Samples self-consistency's N = 32 solutions per problem once (in-process vLLM, the
strategies benchmark's settings), then replays adaptive self-consistency's stopping rules on
each problem's samples in order: after ``initial`` samples and then after every sample, stop
once the rule holds and vote over the samples drawn. The samples are independent draws from
the same distribution as adaptive self-consistency's own one-at-a-time requests, so each row
is what the strategy would score at that setting, without rerunning it per setting. Prints
accuracy, mean samples and the share of SC@32's tokens per rule; writes
benchmarks/results/adaptive_replay.json and the ``adaptive_replay`` section of BENCHMARKS.md.

    python benchmarks/adaptive_replay.py [--problems 400] [--seed 0]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import table, write_json, write_section
from benchmarks.sc_samples import replay_args, sample_problems
from branchwise.strategies.adaptive_consistency import leader_probability
from branchwise.verifiers.reference import answers_match

SAMPLES = 32
INITIAL = 2
RULES: list[tuple[str, float]] = [
    ("beta", 0.8), ("beta", 0.9), ("beta", 0.95), ("beta", 0.99),
    ("supermajority", 0.6), ("supermajority", 0.75), ("supermajority", 0.9),
]  # fmt: skip

# One problem's samples in order: (answer or None, generated tokens).
Samples = list[tuple[str | None, int]]


def vote(answers: list[str | None]) -> str | None:
    """Majority vote; ties go to the answer sampled first (as ``majority_vote`` does)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)


def stops(answers: list[str | None], rule: str, threshold: float) -> bool:
    counts = sorted(Counter(a for a in answers if a is not None).values())
    leader = counts[-1] if counts else 0
    runner_up = counts[-2] if len(counts) > 1 else 0
    if rule == "beta":
        return leader_probability(leader, runner_up) >= threshold
    return leader / len(answers) >= threshold


def replay(samples: Samples, rule: str, threshold: float) -> tuple[str | None, int, int]:
    """(voted answer, samples drawn, tokens generated) under one stopping rule."""
    drawn = min(INITIAL, len(samples))
    while drawn < len(samples) and not stops([a for a, _ in samples[:drawn]], rule, threshold):
        drawn += 1
    return (
        vote([a for a, _ in samples[:drawn]]),
        drawn,
        sum(tokens for _, tokens in samples[:drawn]),
    )


def main() -> None:
    args = replay_args(__doc__)
    started = time.perf_counter()
    paths, references = asyncio.run(sample_problems(args.problems, SAMPLES, args.seed))
    samples: list[Samples] = [[(n.answer, len(n.token_ids)) for n in p] for p in paths]
    full_tokens = statistics.fmean(sum(t for _, t in s) for s in samples)
    full = statistics.fmean(
        answers_match(vote([a for a, _ in s]), ref)
        for s, ref in zip(samples, references, strict=True)
    )
    rows: list[dict[str, Any]] = []
    for rule, threshold in RULES:
        outcomes = [replay(s, rule, threshold) for s in samples]
        tokens = statistics.fmean(o[2] for o in outcomes)
        rows.append(
            {
                "rule": rule,
                "threshold": threshold,
                "accuracy": statistics.fmean(
                    answers_match(o[0], ref) for o, ref in zip(outcomes, references, strict=True)
                ),
                "mean_samples": statistics.fmean(o[1] for o in outcomes),
                "stopped_at_initial": statistics.fmean(o[1] == INITIAL for o in outcomes),
                "ran_to_max": statistics.fmean(o[1] == SAMPLES for o in outcomes),
                "tokens_per_problem": tokens,
                "token_share": tokens / full_tokens,
            }
        )
    data = {
        "problems": len(samples),
        "samples": SAMPLES,
        "initial": INITIAL,
        "seed": args.seed,
        "sc_accuracy": full,
        "sc_tokens_per_problem": full_tokens,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    body = table(
        ["rule", "threshold", "accuracy", "mean samples", "stopped at 2", "ran to 32",
         "tokens/problem", "share of SC@32 tokens"],
        [[r["rule"], r["threshold"], f"{r['accuracy']:.3f}", f"{r['mean_samples']:.1f}",
          f"{r['stopped_at_initial']:.0%}", f"{r['ran_to_max']:.0%}",
          f"{r['tokens_per_problem']:.0f}", f"{r['token_share']:.0%}"] for r in rows],
    )  # fmt: skip
    print(body)
    print(f"SC@{SAMPLES}: {full:.3f} with {full_tokens:.0f} tokens per problem")
    write_json("adaptive_replay", data)
    write_section(
        "adaptive_replay",
        "## Adaptive self-consistency: stopping rules replayed on SC@32's samples\n\n"
        f"{len(samples)} testbed eval problems, {SAMPLES} samples each (seed {args.seed}); "
        f"self-consistency over all {SAMPLES}: **{full:.3f}** with {full_tokens:.0f} tokens per "
        f"problem. Each row stops after {INITIAL} samples or later, as adaptive "
        "self-consistency would, and votes over what it drew.\n"
        f"Command: `python benchmarks/adaptive_replay.py --problems {len(samples)} "
        f"--seed {args.seed}`.\n\n{body}\n",
    )


if __name__ == "__main__":
    main()

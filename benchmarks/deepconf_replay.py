"""Why DeepConf does or does not beat voting here: does a trace's confidence know it is right?

Samples self-consistency's N = 32 solutions per problem once with top-20 logprobs (the
strategies benchmark's settings), computes each trace's DeepConf confidence (lowest sliding
window of 8 tokens, as the benchmark's DeepConf arm; and the whole-trace mean), and reports
how well it separates right from wrong traces (ROC AUC over all traces, and within a
problem, where the vote is decided), then offline DeepConf on the same samples: keep the
most confident 90 % (DeepConf-high) or 10 % (-low) of a problem's traces, confidence-weighted
vote, against the plain majority vote over all 32. Writes benchmarks/results/deepconf_replay.json
and the ``deepconf_replay`` section of BENCHMARKS.md.

    python benchmarks/deepconf_replay.py [--problems 400] [--seed 0]
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import table, write_json, write_section
from benchmarks.sc_samples import replay_args, sample_problems
from branchwise.core.graph import Node
from branchwise.rewards.confidence import ConfidenceMeasure, trace_confidence
from branchwise.strategies.selection import majority_vote, weighted_vote
from branchwise.verifiers.reference import answers_match
from examples.testbed.card_metrics import roc_auc, within_problem_auc

SAMPLES = 32
TOP_K = 20
WINDOW = 8  # the strategies benchmark's DeepConf window


def confidence(node: Node, measure: ConfidenceMeasure) -> float:
    return trace_confidence(
        node.top_logprobs,
        measure,
        window=WINDOW,
        tail=16,
        bottom_share=0.1,
    )


def deepconf_vote(
    problem: list[Node], confidence: dict[str, float], percent: float | None
) -> str | None:
    """DeepConf's offline vote (strategies/deepconf.py ``_vote``): answered traces only, the
    most confident ``percent`` % of them (None: all), confidence-weighted."""
    rated = [n for n in problem if n.answer is not None and n.id in confidence]
    if percent is not None and rated:
        count = max(1, math.ceil(len(rated) * percent / 100))
        order = {n.id: i for i, n in enumerate(problem)}
        rated = sorted(rated, key=lambda n: -confidence[n.id])[:count]
        rated.sort(key=lambda n: order[n.id])
    return weighted_vote(rated, lambda n: confidence[n.id]).answer


def main() -> None:
    args = replay_args(__doc__)
    started = time.perf_counter()
    paths, references = asyncio.run(
        sample_problems(args.problems, SAMPLES, args.seed, logprobs=TOP_K)
    )
    separation: list[list[Any]] = []
    measures: tuple[ConfidenceMeasure, ...] = ("lowest_group", "mean")
    scored: dict[str, list[list[tuple[str | None, float, bool]]]] = {}
    for measure in measures:
        scored[measure] = [
            [
                (n.answer, confidence(n, measure), answers_match(n.answer, ref))
                for n in problem
                if n.top_logprobs
            ]
            for problem, ref in zip(paths, references, strict=True)
        ]
        flat = [t for problem in scored[measure] for t in problem]
        pooled = roc_auc([c for _, c, _ in flat], [ok for _, _, ok in flat])
        within = within_problem_auc(
            [[(c, ok) for _, c, ok in problem] for problem in scored[measure]]
        )
        separation.append([measure, f"{pooled:.3f}", f"{within:.3f}"])
    votes: list[list[Any]] = []
    lowest = [
        {n.id: confidence(n, "lowest_group") for n in problem if n.top_logprobs}
        for problem in paths
    ]

    def accuracy(choose: Any) -> float:
        return statistics.fmean(
            answers_match(choose(problem, conf), ref)
            for problem, conf, ref in zip(paths, lowest, references, strict=True)
        )

    majority = accuracy(lambda problem, _: majority_vote(problem).answer)
    votes.append(["majority vote over all 32 (self-consistency)", f"{majority:.3f}"])
    weighted = accuracy(lambda problem, conf: deepconf_vote(problem, conf, None))
    votes.append(["confidence-weighted vote over all 32", f"{weighted:.3f}"])
    for percent in (90, 10):
        value = accuracy(lambda problem, conf, p=percent: deepconf_vote(problem, conf, p))
        votes.append([f"DeepConf offline: keep {percent}%, weighted vote", f"{value:.3f}"])
    right_share = statistics.fmean(
        answers_match(n.answer, ref) for problem, ref in zip(paths, references, strict=True)
        for n in problem
    )  # fmt: skip
    data = {
        "problems": len(paths), "samples": SAMPLES, "top_k": TOP_K, "window": WINDOW,
        "seed": args.seed, "right_trace_share": right_share, "separation": separation,
        "votes": votes, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    first = table(["trace confidence", "AUC over all traces", "AUC within a problem"], separation)
    second = table(["answer from the same 32 traces", "accuracy"], votes)
    print(first, second, sep="\n\n")
    write_json("deepconf_replay", data)
    write_section(
        "deepconf_replay",
        "## DeepConf: does a trace's confidence know it is right?\n\n"
        f"{len(paths)} testbed eval problems, {SAMPLES} samples each with top-{TOP_K} logprobs "
        f"(seed {args.seed}); {right_share:.0%} of the traces are right. Confidence from "
        f"DeepConf's token confidence (minus the mean top-{TOP_K} logprob), lowest "
        f"{WINDOW}-token window or whole-trace mean; AUC 0.5 means no signal.\n"
        f"Command: `python benchmarks/deepconf_replay.py --problems {len(paths)} --seed "
        f"{args.seed}`.\n\n{first}\n\n{second}\n",
    )


if __name__ == "__main__":
    main()

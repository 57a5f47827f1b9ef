"""Measure every number on the testbed's model card, through vLLM, on a held-out split.

Policy: greedy accuracy, accuracy of one sample at T=1.0, coverage (pass@k) at k=1,4,8,16,32.
PRM (on the first `--prm-samples` samples of each problem): step-level AUC against the exact
checker, within-problem AUC (a right solution scored above a wrong one of the same problem), the
accuracy of the sample the PRM alone picks (highest min-over-steps or last-step score), the
majority vote of the same samples, and the largest gap between vLLM's and torch's step scores.
The last line printed is one JSON object; `--out` also writes it to a file.

    python examples/testbed/measure.py --out examples/testbed/results/eval.json

The test split is read only with `--final` (`--data data/test.jsonl --final`), once every choice
is made on val; each result records the SHA-256 of the file it measured.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from bpe_tokenizer import load_tokenizer, render_prompt  # noqa: E402
from card_metrics import pass_at_k, roc_auc, within_problem_auc  # noqa: E402
from prm_model import prm_input  # noqa: E402
from task import read_jsonl  # noqa: E402

from branchwise.orchestrator.help_format import HelpWithDefaults  # noqa: E402
from branchwise.verifiers.arithmetic_steps import (  # noqa: E402
    check_steps,
    extract_answer,
    is_correct,
    parse_steps,
)

KS = (1, 4, 8, 16, 32)
AGGREGATIONS = ("min", "last")
# Chosen on the val split (see README): the PRM's pick among samples uses this aggregation.
DEFAULT_AGGREGATION = "last"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults,
        description="Measure the testbed models.",
    )
    parser.add_argument("--policy", type=Path, default=HERE / "models" / "policy")
    parser.add_argument("--prm", type=Path, default=HERE / "models" / "prm")
    parser.add_argument("--data", type=Path, default=HERE / "data" / "eval.jsonl")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N problems")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--prm-samples", type=int, default=8, help="samples per problem scored")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default=DEFAULT_AGGREGATION)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--policy-only", action="store_true", help="skip the PRM")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--final", action="store_true", help="the one measurement allowed on the test split"
    )
    args = parser.parse_args(argv)
    if args.data.stem == "test" and not args.final:
        parser.error(
            f"--data {args.data.name} is the held-back test split: measure on val or eval while "
            "choosing, and add --final for the one measurement on test"
        )
    return args


def measure_policy(
    args: argparse.Namespace, problems: list[dict[str, str]]
) -> tuple[dict[str, float], list[list[str]]]:
    """Greedy and sampled accuracy and coverage; returns the samples for the PRM."""
    from vllm_engines import policy_llm, sample_solutions

    tokenizer = load_tokenizer(args.policy)
    prompts = [
        tokenizer(render_prompt(p["question"]), add_special_tokens=False)["input_ids"]
        for p in problems
    ]
    llm = policy_llm(args.policy, seed=args.seed)
    greedy = sample_solutions(llm, prompts, n=1, temperature=0.0)
    sampled = sample_solutions(llm, prompts, n=args.samples, temperature=1.0)
    del llm
    gc.collect()
    greedy_ok = [is_correct(p, texts[0]) for p, texts in zip(problems, greedy, strict=True)]
    n_ok = [
        sum(is_correct(p, t) for t in texts) for p, texts in zip(problems, sampled, strict=True)
    ]
    results = {
        "greedy_accuracy": statistics.fmean(greedy_ok),
        "single_sample_accuracy": statistics.fmean(c / args.samples for c in n_ok),
        "answered_fraction": statistics.fmean(
            extract_answer(t) is not None for texts in sampled for t in texts
        ),
    }
    for k in KS:
        if k <= args.samples:
            results[f"coverage_at_{k}"] = statistics.fmean(
                pass_at_k(args.samples, c, k) for c in n_ok
            )
    return results, sampled


def aggregate(scores: Sequence[float], how: str) -> float:
    """One score per solution from its step scores (0.0 for a solution without steps)."""
    if not scores:
        return 0.0
    return min(scores) if how == "min" else scores[-1]


def majority_correct(problem: dict[str, str], texts: Sequence[str]) -> bool:
    """Whether the most frequent final answer (first seen wins a tie) is right."""
    answers = [a for t in texts if (a := extract_answer(t)) is not None]
    if not answers:
        return False
    voted = Counter(answers).most_common(1)[0][0]
    return any(is_correct(problem, t) for t in texts if extract_answer(t) == voted)


def measure_prm(
    args: argparse.Namespace, problems: list[dict[str, str]], sampled: list[list[str]]
) -> dict[str, float]:
    """Step and within-problem discrimination of the PRM and the accuracy of its pick."""
    from vllm_engines import prm_llm, step_probabilities

    items = [
        (p, t)
        for p, texts in zip(problems, sampled, strict=True)
        for t in texts[: args.prm_samples]
    ]
    inputs = [prm_input(p["question"], parse_steps(t)) for p, t in items]
    llm = prm_llm(args.prm)
    start = time.perf_counter()
    probs = step_probabilities(llm, inputs)
    scoring_seconds = time.perf_counter() - start
    gap = torch_gap(args.prm, llm, inputs[:16])
    del llm
    gc.collect()
    step_scores: list[float] = []
    step_labels: list[bool] = []
    groups: dict[str, dict[str, list[tuple[float, bool]]]] = {how: {} for how in AGGREGATIONS}
    for (problem, text), row in zip(items, probs, strict=True):
        verdicts = check_steps(problem, text)
        step_scores.extend(row)
        step_labels.extend(verdicts)
        correct = is_correct(problem, text)
        for how in AGGREGATIONS:
            groups[how].setdefault(problem["id"], []).append((aggregate(row, how), correct))
    results: dict[str, float] = {
        "prm_step_auc": roc_auc(step_scores, step_labels),
        "prm_steps_scored": float(len(step_scores)),
        "prm_step_positive_rate": statistics.fmean(step_labels),
        "prm_vllm_torch_max_abs_diff": gap,
        "prm_scoring_seconds": scoring_seconds,
    }
    for how in AGGREGATIONS:
        picked = [max(g, key=lambda sc: sc[0])[1] for g in groups[how].values()]
        results[f"prm_best_of_{args.prm_samples}_{how}"] = statistics.fmean(picked)
        results[f"prm_within_problem_auc_{how}"] = within_problem_auc(list(groups[how].values()))
    results[f"prm_best_of_{args.prm_samples}"] = results[
        f"prm_best_of_{args.prm_samples}_{args.aggregation}"
    ]
    results["prm_within_problem_auc"] = results[f"prm_within_problem_auc_{args.aggregation}"]
    results[f"majority_of_{args.prm_samples}"] = statistics.fmean(
        majority_correct(p, texts[: args.prm_samples])
        for p, texts in zip(problems, sampled, strict=True)
    )
    results[f"single_of_{args.prm_samples}"] = statistics.fmean(is_correct(p, t) for p, t in items)
    return results


def torch_gap(prm: Path, llm: object, texts: list[str]) -> float:
    """Largest |P_vLLM - P_torch| over the step scores of `texts`: the head loads as trained."""
    from prm_model import ProcessRewardModel, step_rewards
    from vllm_engines import step_probabilities

    served = step_probabilities(llm, texts)  # type: ignore[arg-type]
    local = step_rewards(ProcessRewardModel.load(prm), load_tokenizer(prm), texts)
    return max(
        abs(a - b)
        for s, row in zip(served, local, strict=True)
        for a, b in zip(s, row, strict=True)
    )


def training_summary(folder: Path) -> dict[str, object]:
    info_path = folder / "training_info.json"
    return json.loads(info_path.read_text()) if info_path.exists() else {}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    problems = read_jsonl(args.data)
    if args.limit:
        problems = problems[: args.limit]
    start = time.perf_counter()
    results: dict[str, object] = {
        "split": args.data.stem,
        "problems": len(problems),
        "data_sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
    }
    policy, sampled = measure_policy(args, problems)
    results.update(policy)
    if not args.policy_only:
        results.update(measure_prm(args, problems, sampled))
        results["aggregation"] = args.aggregation
    results["policy_parameters"] = training_summary(args.policy).get("parameters")
    results["prm_parameters"] = training_summary(args.prm).get("parameters")
    results["measure_seconds"] = time.perf_counter() - start
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}
    line = json.dumps(rounded)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()

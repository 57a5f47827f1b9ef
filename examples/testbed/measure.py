"""Measure every number on the testbed's model card, through vLLM, on the held-out eval split.

Policy: greedy accuracy, accuracy of one sample at T=1.0, coverage (pass@k) at k=1,4,16,32.
PRM: step-level AUC and accuracy against the exact checker on policy samples, outcome AUC,
best-of-N by the PRM's outcome score, and the largest gap between vLLM's and a plain torch
forward's scores. Prints sizes, training times and how to retrain; the last line is one JSON
object with `greedy_accuracy`, `sample_accuracy`, `coverage_at_32`, `prm_step_auc`.

    python examples/testbed/measure.py
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from card_metrics import pass_at_k, roc_auc  # noqa: E402
from prm_data import outcome_position, prm_text, step_positions  # noqa: E402
from task import prompt_for, read_jsonl  # noqa: E402

from verifiers.arithmetic_steps import check_steps, extract_answer, is_correct  # noqa: E402

KS = (1, 4, 16, 32)
RETRAIN = """\
python examples/testbed/task.py --out examples/testbed/data
python examples/testbed/train_policy.py --out examples/testbed/models/policy
python examples/testbed/train_prm.py --policy examples/testbed/models/policy \\
    --out examples/testbed/models/prm
python examples/testbed/measure.py"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure the testbed models.")
    parser.add_argument("--policy", type=Path, default=HERE / "models" / "policy")
    parser.add_argument("--prm", type=Path, default=HERE / "models" / "prm")
    parser.add_argument("--data", type=Path, default=HERE / "data" / "eval.jsonl")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N problems")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--prm-samples", type=int, default=8, help="samples per problem scored")
    parser.add_argument("--seed", type=int, default=1234)
    return parser.parse_args(argv)


def measure_policy(
    args: argparse.Namespace, problems: list[dict[str, str]]
) -> tuple[dict[str, float], list[list[str]]]:
    """Greedy and sampled accuracy and coverage; returns the samples for the PRM."""
    from vllm_engines import policy_llm, sample_solutions

    llm = policy_llm(args.policy)
    prompts = [prompt_for(p["question"]) for p in problems]
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
        "sample_accuracy": statistics.fmean(c / args.samples for c in n_ok),
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


def measure_prm(
    args: argparse.Namespace, problems: list[dict[str, str]], sampled: list[list[str]]
) -> dict[str, float]:
    """Step and outcome discrimination of the PRM on policy samples, and PRM-picked accuracy."""
    from vllm_engines import prm_llm, token_probabilities

    items = [
        (p, t)
        for p, texts in zip(problems, sampled, strict=True)
        for t in texts[: args.prm_samples]
    ]
    llm = prm_llm(args.prm)
    probs = token_probabilities(llm, [prm_text(p["question"], t) for p, t in items])
    gap = torch_gap(args.prm, llm, [prm_text(p["question"], t) for p, t in items[:16]])
    del llm
    gc.collect()
    step_scores: list[float] = []
    step_labels: list[bool] = []
    outcome_scores: list[float] = []
    outcome_labels: list[bool] = []
    picked: dict[str, tuple[float, bool]] = {}
    for (problem, text), row in zip(items, probs, strict=True):
        verdicts = check_steps(problem, text)
        for position, ok in zip(step_positions(problem["question"], text), verdicts, strict=False):
            step_scores.append(row[position])
            step_labels.append(ok)
        end = outcome_position(problem["question"], text)
        score = row[end] if end is not None else 0.0
        correct = is_correct(problem, text)
        if end is not None:
            outcome_scores.append(score)
            outcome_labels.append(correct)
        best = picked.get(problem["id"])
        if best is None or score > best[0]:
            picked[problem["id"]] = (score, correct)
    return {
        "prm_step_auc": roc_auc(step_scores, step_labels),
        "prm_step_accuracy": statistics.fmean(
            (s >= 0.5) == label for s, label in zip(step_scores, step_labels, strict=True)
        ),
        "prm_steps_scored": float(len(step_scores)),
        "prm_step_positive_rate": statistics.fmean(step_labels),
        "prm_outcome_auc": roc_auc(outcome_scores, outcome_labels),
        f"prm_best_of_{args.prm_samples}_accuracy": statistics.fmean(c for _, c in picked.values()),
        "prm_vllm_torch_max_abs_diff": gap,
    }


def torch_gap(prm: Path, llm: object, texts: list[str]) -> float:
    """Largest |P_vLLM - P_torch| over all tokens of `texts`: proof the trained head is loaded."""
    import torch
    from transformers import AutoTokenizer, LlamaForTokenClassification
    from vllm_engines import token_probabilities

    tokenizer = AutoTokenizer.from_pretrained(prm)
    model = LlamaForTokenClassification.from_pretrained(prm, dtype=torch.float32).eval()
    served = token_probabilities(llm, texts)  # type: ignore[arg-type]
    gap = 0.0
    with torch.no_grad():
        for text, row in zip(texts, served, strict=True):
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            local = model(input_ids=ids).logits.softmax(-1)[0, :, 1]
            gap = max(gap, (local - torch.tensor(row)).abs().max().item())
    return gap


def training_summary(folder: Path) -> dict[str, object]:
    info_path = folder / "training_info.json"
    return json.loads(info_path.read_text()) if info_path.exists() else {}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    problems = read_jsonl(args.data)
    if args.limit:
        problems = problems[: args.limit]
    start = time.perf_counter()
    policy, sampled = measure_policy(args, problems)
    prm = measure_prm(args, problems, sampled)
    policy_info, prm_info = training_summary(args.policy), training_summary(args.prm)
    print(f"eval problems: {len(problems)} ({args.data.name}), samples per problem: {args.samples}")
    print(f"greedy accuracy:            {policy['greedy_accuracy']:.3f}")
    print(f"one sample at T=1.0:        {policy['sample_accuracy']:.3f}")
    for k in KS:
        if f"coverage_at_{k}" in policy:
            print(f"coverage at k={k:<2}:          {policy[f'coverage_at_{k}']:.3f}")
    print(f"samples with an answer:     {policy['answered_fraction']:.3f}")
    print(f"PRM step AUC:               {prm['prm_step_auc']:.3f}")
    print(f"PRM step accuracy (>=0.5):  {prm['prm_step_accuracy']:.3f}")
    print(f"PRM steps scored:           {int(prm['prm_steps_scored'])}")
    print(f"  of which correct:         {prm['prm_step_positive_rate']:.3f}")
    print(f"PRM outcome AUC:            {prm['prm_outcome_auc']:.3f}")
    best_key = f"prm_best_of_{args.prm_samples}_accuracy"
    print(f"best of {args.prm_samples} by PRM outcome:    {prm[best_key]:.3f}")
    print(f"PRM vLLM vs torch max gap:  {prm['prm_vllm_torch_max_abs_diff']:.2e}")
    print(f"policy parameters:          {policy_info.get('parameters', '?')}")
    print(f"PRM parameters:             {prm_info.get('parameters', '?')}")
    print(f"policy training time:       {policy_info.get('training_seconds', '?')} s")
    print(f"PRM sampling time:          {prm_info.get('sampling_seconds', '?')} s")
    print(f"PRM training time:          {prm_info.get('training_seconds', '?')} s")
    print(f"measurement time:           {time.perf_counter() - start:.0f} s")
    print("retrain:")
    print(RETRAIN)
    summary = {
        "greedy_accuracy": round(policy["greedy_accuracy"], 4),
        "sample_accuracy": round(policy["sample_accuracy"], 4),
        "coverage_at_32": round(policy.get("coverage_at_32", float("nan")), 4),
        "prm_step_auc": round(prm["prm_step_auc"], 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

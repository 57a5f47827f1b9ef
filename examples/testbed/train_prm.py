"""Train the testbed's process reward model on steps sampled from the policy.

1. The policy (served by vLLM) writes `--samples` solutions at temperature 1.0 for each of
   `--questions` training problems; the exact checker labels every step (prefix correctness)
   and every final answer.
2. A `LlamaForTokenClassification` with the policy's shape starts from the policy's weights
   (it already reads these problems) plus a fresh 2-class `score` head, and learns to predict the
   labels at each step's closing newline and at the end of the answer line.
3. It is saved so that vLLM serves it on the pooling path (`runner="pooling"`, `token_classify`).

    python examples/testbed/train_prm.py --policy examples/testbed/models/policy \\
        --out examples/testbed/models/prm
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Sleep rather than spin while waiting for sibling threads: on a shared 2-core machine spinning
# OpenMP threads stalled training many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForTokenClassification, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from charlm import build_tokenizer, encode_chars, write_generation_config
from prm_data import labelled_positions, prm_text
from task import make_splits, prompt_for, read_jsonl, write_jsonl
from train_policy import lr_at, save_tokenizer

IGNORE = -100
HERE = Path(__file__).resolve().parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the testbed PRM.")
    parser.add_argument("--policy", type=Path, default=HERE / "models" / "policy")
    parser.add_argument("--out", type=Path, default=HERE / "models" / "prm")
    parser.add_argument(
        "--samples-in",
        type=Path,
        default=None,
        help="train on these saved policy samples (JSONL) instead of sampling the policy",
    )
    parser.add_argument(
        "--samples-out",
        type=Path,
        default=HERE / "data" / "prm_samples.jsonl",
        help="where to save the policy samples, for reuse with --samples-in",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=60_000)
    parser.add_argument("--questions", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--dense-labels", action="store_true", help="also label every step character (prm_data)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=25)
    return parser.parse_args(argv)


def sample_policy(args: argparse.Namespace) -> list[dict[str, str]]:
    """Policy solutions for the last `--questions` train problems, one record per sample."""
    if args.samples_in is not None:
        records = read_jsonl(args.samples_in)
        print(f"using {len(records)} saved samples from {args.samples_in}", flush=True)
        return records
    from vllm_engines import policy_llm, sample_solutions

    train = make_splits(args.seed, {"eval": 600, "val": 300, "train": args.train_size})["train"]
    problems = train[-args.questions :]
    llm = policy_llm(args.policy, seed=args.seed)
    texts = sample_solutions(
        llm,
        [prompt_for(p.question) for p in problems],
        n=args.samples,
        temperature=1.0,
    )
    del llm
    gc.collect()
    records = [
        {"question": p.question, "answer": p.answer, "solution": text}
        for p, solutions in zip(problems, texts, strict=True)
        for text in solutions
    ]
    write_jsonl(args.samples_out, records)
    return records


def encode_sample(
    tokenizer: PreTrainedTokenizerFast, record: dict[str, str], *, dense: bool = False
) -> tuple[list[int], list[int]] | None:
    """Token ids of the PRM text and per-token labels (IGNORE where nothing is taught)."""
    pairs = labelled_positions(record, record["solution"], dense=dense)
    if not pairs:
        return None
    ids = [
        tokenizer.bos_token_id,
        *encode_chars(tokenizer, prm_text(record["question"], record["solution"])),
    ]
    labels = [IGNORE] * len(ids)
    for position, label in pairs:
        labels[position] = label
    return ids, labels


def make_batch(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (seq, lab) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, : len(seq)] = torch.tensor(lab)
        mask[i, : len(seq)] = 1
    return ids, mask, labels


def prm_from_policy(policy: Path) -> LlamaForTokenClassification:
    """The policy's transformer with a fresh 2-class head (the policy's LM head is dropped)."""
    config = LlamaConfig.from_pretrained(policy)
    config.num_labels = 2
    config.id2label = {0: "incorrect", 1: "correct"}
    config.label2id = {"incorrect": 0, "correct": 1}
    config.classifier_dropout = 0.0
    config.architectures = ["LlamaForTokenClassification"]
    model = LlamaForTokenClassification(config)
    weights = {
        k: v for k, v in load_file(policy / "model.safetensors").items() if k.startswith("model.")
    }
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and set(missing) == {"score.weight", "score.bias"}, (missing, unexpected)
    return model


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    records = sample_policy(args)
    sampling_seconds = time.perf_counter() - start
    tokenizer = build_tokenizer()
    rows = [
        row
        for r in records
        if (row := encode_sample(tokenizer, r, dense=args.dense_labels)) is not None
    ]
    n_labels = sum(1 for _, lab in rows for x in lab if x != IGNORE)
    n_positive = sum(1 for _, lab in rows for x in lab if x == 1)
    if n_labels == 0:
        raise ValueError("the policy samples contain no complete step to learn from")
    print(
        f"{len(rows)} samples, {n_labels} labels, {n_positive / n_labels:.1%} correct", flush=True
    )
    model = prm_from_policy(args.policy)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    rng = random.Random(args.seed)
    order: list[int] = []
    train_start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        if len(order) < args.batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order.extend(fresh)
        batch_idx, order = order[: args.batch_size], order[args.batch_size :]
        ids, mask, labels = make_batch([rows[i] for i in batch_idx], tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 2), labels.reshape(-1), ignore_index=IGNORE
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - train_start
            print(f"step {step:5d}  loss {loss.item():.4f}  {elapsed:6.0f}s", flush=True)
    training_seconds = time.perf_counter() - train_start
    save_prm(args.out, model, tokenizer, args, sampling_seconds, training_seconds)
    print(
        f"saved to {args.out}: sampling {sampling_seconds:.0f}s, training {training_seconds:.0f}s",
        flush=True,
    )


def save_prm(
    out: Path,
    model: LlamaForTokenClassification,
    tokenizer: PreTrainedTokenizerFast,
    args: argparse.Namespace,
    sampling_seconds: float,
    training_seconds: float,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out, tokenizer)
    write_generation_config(out, tokenizer)
    info = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "sampling_seconds": round(sampling_seconds, 1),
        "training_seconds": round(training_seconds, 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()

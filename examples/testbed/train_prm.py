"""Train the testbed's process reward model, in the Qwen2.5-Math-PRM format, to rank solutions.

1. Samples: the policy (served by vLLM) writes `--samples` solutions at T=1.0 for each of
   `--questions` train problems (saved to `--samples-file`, reused when it exists).
2. Model: a Qwen2 backbone deeper than the policy's (`--extra-layers` more), its first layers and
   embeddings copied from the policy and the new layers starting as the identity (their output
   projections zeroed), plus Qwen2.5-Math-PRM's head `Linear(H, H) -> ReLU -> Linear(H, 2)`.
3. Each batch takes `--groups` problems and `--per-group` solutions of each (at least one right
   and one wrong where the pool allows), drawn from the policy's samples, the reference solution
   and freshly perturbed solutions (`prm_data.perturbed_solution`). The loss adds:
   - cross-entropy at each `<extra_0>` against the exact checker's verdict;
   - `--dense-weight` x cross-entropy at each step token (still a prefix of a right solution?);
   - `--pair-weight` x a within-problem pairwise loss on the last `<extra_0>`'s logit margin
     (each right solution above each wrong one of the same problem);
   - `--digit-weight` x cross-entropy of a temporary 10-way head at each digit token whose prefix
     is right, against the digit that belongs there (see prm_data);
   - `--lm-weight` x next-token loss on reference solutions through the tied embeddings, so the
     backbone keeps (and sharpens) the arithmetic it inherited from the policy.
4. A checkpoint (weights, optimizer, step) is written every `--checkpoint-every` steps and training
   resumes from it; batches are drawn from a generator seeded by (seed, step), so a resumed run
   draws what an uninterrupted one would.

    python examples/testbed/train_prm.py --policy examples/testbed/models/policy \\
        --out examples/testbed/models/prm
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Sleep rather than spin while waiting for sibling threads (shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import PreTrainedTokenizerBase, Qwen2Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bpe_tokenizer import STEP_TAG, load_tokenizer, render_prompt, save_tokenizer
from prm_data import IGNORE, Example, make_example, perturbed_solution
from prm_model import ProcessRewardModel
from task import Problem, make_splits, read_jsonl, write_jsonl
from train_policy import lr_at

from branchwise.orchestrator.help_format import HelpWithDefaults

HERE = Path(__file__).resolve().parent

SAMPLING_SEED = 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults, description="Train the testbed PRM."
    )
    parser.add_argument("--policy", type=Path, default=HERE / "models" / "policy")
    parser.add_argument("--out", type=Path, default=HERE / "models" / "prm")
    parser.add_argument("--samples-file", type=Path, default=HERE / "data" / "prm_samples.jsonl")
    parser.add_argument(
        "--init-from", type=Path, default=None, help="start from this checkpoint's weights"
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="default: OUT.ckpt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=60_000)
    parser.add_argument("--questions", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--extra-layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--groups", type=int, default=8, help="problems per batch")
    parser.add_argument("--per-group", type=int, default=4, help="solutions per problem")
    parser.add_argument("--perturbed", type=int, default=3, help="perturbed solutions per pool")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--dense-weight", type=float, default=2.0)
    parser.add_argument("--pair-weight", type=float, default=1.0)
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--digit-weight", type=float, default=1.0)
    parser.add_argument(
        "--wrong-digit-weight", type=float, default=10.0, help="weight of a wrong digit's terms"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--monitor", type=int, default=100, help="held-out sampled questions")
    parser.add_argument("--monitor-every", type=int, default=250)
    return parser.parse_args(argv)


def sample_policy(args: argparse.Namespace, problems: Sequence[Problem]) -> list[dict[str, str]]:
    """The policy's T=1.0 solutions to `problems` (`--samples` each), read from or saved to file."""
    if args.samples_file.exists():
        records = read_jsonl(args.samples_file)
        print(f"using {len(records)} saved samples from {args.samples_file}", flush=True)
        return records
    from vllm_engines import policy_llm, sample_solutions

    tokenizer = load_tokenizer(args.policy)
    prompts = [
        tokenizer(render_prompt(p.question), add_special_tokens=False)["input_ids"]
        for p in problems
    ]
    llm = policy_llm(args.policy, seed=SAMPLING_SEED)
    texts = sample_solutions(llm, prompts, n=args.samples, temperature=1.0)
    del llm
    gc.collect()
    records = [
        {"id": p.id, "question": p.question, "answer": p.answer, "solution": text}
        for p, solutions in zip(problems, texts, strict=True)
        for text in solutions
    ]
    write_jsonl(args.samples_file, records)
    return records


def prm_from_policy(policy: Path, extra_layers: int) -> ProcessRewardModel:
    """A deeper copy of the policy's backbone (new layers start as the identity) + a fresh head."""
    config = Qwen2Config.from_pretrained(policy)
    config.num_hidden_layers += extra_layers
    config.layer_types = ["full_attention"] * config.num_hidden_layers
    config.num_labels = 2
    config._attn_implementation = "eager"
    model = ProcessRewardModel(config)
    weights = {
        k: v
        for k, v in load_file(str(policy / "model.safetensors")).items()
        if k.startswith("model.")
    }
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith(("score.", "model.layers.")) for k in missing), missing
    first_new = config.num_hidden_layers - extra_layers
    with torch.no_grad():
        for layer in model.model.layers[first_new:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model


class Pools:
    """Per training problem: the policy's samples, the reference and fresh perturbations."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        problems: Sequence[Problem],
        samples: Sequence[dict[str, str]],
        *,
        perturbed: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.problems = list(problems)
        self.perturbed = perturbed
        by_question: dict[str, list[Example]] = {p.question: [] for p in problems}
        for record in samples:
            if record["question"] in by_question:
                example = make_example(tokenizer, record, record["solution"], dense=True)
                if example is not None:
                    by_question[record["question"]].append(example)
        self.sampled = [by_question[p.question] for p in self.problems]
        self.reference = [
            make_example(tokenizer, p.to_record(), p.solution, dense=True) for p in self.problems
        ]

    def group(self, index: int, size: int, rng: random.Random) -> list[Example]:
        """`size` solutions of one problem, at least one right and one wrong when possible."""
        problem = self.problems[index]
        record = problem.to_record()
        pool = list(self.sampled[index])
        reference = self.reference[index]
        assert reference is not None
        pool.append(reference)
        for _ in range(self.perturbed):
            example = make_example(
                self.tokenizer, record, perturbed_solution(problem, rng), dense=True
            )
            if example is not None:
                pool.append(example)
        right = [e for e in pool if e.solved]
        wrong = [e for e in pool if not e.solved]
        chosen = [rng.choice(right), rng.choice(wrong)] if right and wrong else []
        rest = [e for e in pool if all(e is not c for c in chosen)]
        rng.shuffle(rest)
        return (chosen + rest)[:size]


def batch_tensors(
    examples: Sequence[Example], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, labels and correct-digit targets."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    digits = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        digits[i, : len(e.digit_targets)] = torch.tensor(e.digit_targets)
        mask[i, : len(e.ids)] = 1
    return ids, mask, labels, digits


def prm_loss(
    model: ProcessRewardModel,
    digit_head: torch.nn.Linear,
    groups: Sequence[Sequence[Example]],
    *,
    pad_id: int,
    tag_id: int,
    start_id: int,
    digit_ids: torch.Tensor,
    args: argparse.Namespace,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Tag cross-entropy + dense + pairwise + LM terms (see the module docstring)."""
    flat = [e for g in groups for e in g]
    ids, mask, labels, digits = batch_tensors(flat, pad_id)
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = model.score(hidden)
    is_tag = ids == tag_id
    tag_labels = torch.where(is_tag, labels, IGNORE)
    dense_labels = torch.where(is_tag, IGNORE, labels)
    tag_loss = F.cross_entropy(logits.reshape(-1, 2), tag_labels.reshape(-1), ignore_index=IGNORE)
    # A wrong digit is rare and is the whole point: weigh its label and its target up.
    dense_flat = dense_labels.reshape(-1)
    dense_weight = torch.where(dense_flat == 0, args.wrong_digit_weight, 1.0)
    dense_weight = dense_weight * (dense_flat != IGNORE)
    dense_terms = F.cross_entropy(logits.reshape(-1, 2), dense_flat.clamp(min=0), reduction="none")
    dense_loss = (dense_terms * dense_weight).sum() / dense_weight.sum().clamp(min=1.0)
    margin = logits[..., 1] - logits[..., 0]
    last_tag = torch.tensor([max(i for i, t in enumerate(e.ids) if t == tag_id) for e in flat])
    final = margin[torch.arange(len(flat)), last_tag]
    pair_terms: list[torch.Tensor] = []
    offset = 0
    for group in groups:
        for i, a in enumerate(group):
            for j, b in enumerate(group):
                if a.solved and not b.solved:
                    pair_terms.append(F.softplus(final[offset + j] - final[offset + i]))
        offset += len(group)
    pair_loss = torch.stack(pair_terms).mean() if pair_terms else final.sum() * 0.0
    # LM loss on solved examples' assistant turns, through the tied input embeddings.
    lm_rows = [i for i, e in enumerate(flat) if e.solved]
    lm_loss = final.sum() * 0.0
    if lm_rows and args.lm_weight > 0:
        rows = torch.tensor(lm_rows)
        lm_logits = hidden[rows, :-1] @ model.model.embed_tokens.weight.T
        targets = ids[rows, 1:].clone()
        for r, row in enumerate(lm_rows):
            seq = flat[row].ids
            answer_start = len(seq) - 1 - seq[::-1].index(start_id) + 3  # "<|im_start|>assistant\n"
            targets[r, : answer_start - 1] = IGNORE
            targets[r, len(seq) - 1 :] = IGNORE
        lm_loss = F.cross_entropy(
            lm_logits.reshape(-1, lm_logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
        )
    digit_logits = digit_head(hidden)
    digit_flat = digits.reshape(-1)
    written = ids.reshape(-1) != digit_ids[digit_flat.clamp(min=0)]
    digit_weight = torch.where(written, args.wrong_digit_weight, 1.0) * (digit_flat != IGNORE)
    digit_terms = F.cross_entropy(
        digit_logits.reshape(-1, digit_logits.shape[-1]), digit_flat.clamp(min=0), reduction="none"
    )
    digit_loss = (digit_terms * digit_weight).sum() / digit_weight.sum().clamp(min=1.0)
    total = (
        args.digit_weight * digit_loss
        + tag_loss
        + args.dense_weight * dense_loss
        + args.pair_weight * pair_loss
        + args.lm_weight * lm_loss
    )
    parts = {
        "tag": tag_loss.item(),
        "dense": dense_loss.item(),
        "pair": pair_loss.item(),
        "lm": lm_loss.item(),
        "digit": digit_loss.item(),
    }
    return total, parts


def monitor(
    model: ProcessRewardModel,
    pools: Pools,
    indices: Sequence[int],
    tag_id: int,
) -> dict[str, float]:
    """Best-of-samples by last / min step score vs one sample, on held-out sampled questions."""
    model.eval()
    last_ok, min_ok, single = [], [], []
    with torch.no_grad():
        for index in indices:
            examples = pools.sampled[index]
            if not examples:
                continue
            last_scores, min_scores = [], []
            for e in examples:
                ids = torch.tensor([e.ids])
                probs = model(ids).softmax(-1)[0, :, 1][ids[0] == tag_id]
                last_scores.append(probs[-1].item())
                min_scores.append(probs.min().item())
            last_ok.append(examples[max(range(len(examples)), key=last_scores.__getitem__)].solved)
            min_ok.append(examples[max(range(len(examples)), key=min_scores.__getitem__)].solved)
            single.append(statistics.fmean(e.solved for e in examples))
    model.train()
    return {
        "single": statistics.fmean(single),
        "best_last": statistics.fmean(last_ok),
        "best_min": statistics.fmean(min_ok),
    }


def shown_path(path: Path) -> str:
    """A path as written in training_info.json: relative to the repository when inside it, so
    the committed file names no machine's folders."""
    resolved = path.resolve()
    root = HERE.parent.parent
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else path.name


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.policy)
    tag_id = int(tokenizer.convert_tokens_to_ids(STEP_TAG))
    start_id = int(tokenizer.convert_tokens_to_ids("<|im_start|>"))
    digit_ids = torch.tensor([tokenizer.convert_tokens_to_ids(d) for d in "0123456789"])
    train = make_splits(args.seed, {"eval": 600, "val": 300, "train": args.train_size})["train"]
    problems = train[-args.questions :]
    start = time.perf_counter()
    samples = sample_policy(args, problems)
    sampling_seconds = time.perf_counter() - start
    pools = Pools(tokenizer, problems, samples, perturbed=args.perturbed)
    held_out = list(range(min(args.monitor, len(problems) // 10)))
    trainable = list(range(len(held_out), len(problems)))
    n_samples = sum(len(s) for s in pools.sampled)
    solved = sum(e.solved for s in pools.sampled for e in s)
    print(
        f"{len(problems)} questions, {n_samples} policy samples ({solved / n_samples:.1%} solved),"
        f" {len(held_out)} held out for monitoring",
        flush=True,
    )
    model = prm_from_policy(args.policy, args.extra_layers)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"PRM: {n_params:,} parameters, {model.config.num_hidden_layers} layers", flush=True)
    # Temporary head for the correct-digit targets (not part of the saved PRM).
    digit_head = torch.nn.Linear(model.config.hidden_size, 10)
    params = [*model.parameters(), *digit_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ckpt_dir = args.checkpoint_dir or args.out.with_name(args.out.name + ".ckpt")
    first_step, trained_seconds = 0, 0.0
    if args.init_from is not None and not (ckpt_dir / "state.pt").exists():
        state = torch.load(args.init_from, weights_only=False)
        model.load_state_dict(state["model"])
        digit_head.load_state_dict(state["digit_head"])
        print(f"weights from {args.init_from} (step {state['step']})", flush=True)
    if (ckpt_dir / "state.pt").exists():
        state = torch.load(ckpt_dir / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        digit_head.load_state_dict(state["digit_head"])
        optimizer.load_state_dict(state["optimizer"])
        first_step, trained_seconds = state["step"], state["seconds"]
        print(f"resumed from {ckpt_dir} at step {first_step}", flush=True)
    model.train()
    train_start = time.perf_counter() - trained_seconds
    done = first_step
    for step in range(first_step, args.steps):
        rng = random.Random(args.seed * 1_000_003 + step)
        chosen = rng.sample(trainable, args.groups)
        groups = [pools.group(i, args.per_group, rng) for i in chosen]
        for group_params in optimizer.param_groups:
            group_params["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss, parts = prm_loss(
            model,
            digit_head,
            groups,
            pad_id=tokenizer.pad_token_id,
            tag_id=tag_id,
            start_id=start_id,
            digit_ids=digit_ids,
            args=args,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - train_start
            detail = " ".join(f"{k} {v:.3f}" for k, v in parts.items())
            print(f"step {step:5d}  loss {loss.item():.4f} ({detail})  {elapsed:6.0f}s", flush=True)
        done = step + 1
        if args.checkpoint_every and done % args.checkpoint_every == 0 and done < args.steps:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "model": model.state_dict(),
                "digit_head": digit_head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": done,
                "seconds": time.perf_counter() - train_start,
            }
            torch.save(state, ckpt_dir / "state.pt.tmp")
            (ckpt_dir / "state.pt.tmp").replace(ckpt_dir / "state.pt")
        if held_out and args.monitor_every and done % args.monitor_every == 0:
            print(f"step {done:5d}  monitor {monitor(model, pools, held_out, tag_id)}", flush=True)
        if (ckpt_dir / "STOP").exists():  # an operator's early stop: save what we have
            print(f"stopped early after step {done}", flush=True)
            break
    training_seconds = time.perf_counter() - train_start
    model.eval()
    model.save(args.out)
    save_tokenizer(args.out, tokenizer)
    info = {
        "parameters": n_params,
        "layers": model.config.num_hidden_layers,
        "step_tag_id": tag_id,
        "sampling_seconds": round(sampling_seconds, 1),
        "training_seconds": round(training_seconds, 1),
        "steps_trained": done,
        "policy_samples": n_samples,
        "args": {k: shown_path(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    (args.out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"saved to {args.out}: sampling {sampling_seconds:.0f}s, training {training_seconds:.0f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()

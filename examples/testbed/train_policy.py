"""Train the testbed's policy: a tiny `Qwen2ForCausalLM` chat model that solves step by step.

The model sees the ChatML prompt (system prompt, question, generation prompt) and learns to write
the solution and `<|im_end|>`; the loss covers only that assistant turn, so all capacity goes to
solving rather than to modelling questions. Same seed and arguments give the same weights (fixed
step count, seeded data order and init). The tokenizer is the committed one
(`bpe_tokenizer.py` builds it).

    python examples/testbed/train_policy.py --out examples/testbed/models/policy

The larger target policy (for draft/target methods such as reward-guided speculative decoding)
grows from the bundled one: `--init-from` copies its embeddings and layers, and the extra layers
start as the identity (their output projections zeroed), so training starts at the policy's
accuracy and the new depth only has to add to it (README's "The target policy" has the command).
With `--resume-dir` it saves its full state every `--state-every` steps and continues from there
(the same command again); a file `STOP` in that folder makes it save and stop after a step.
"""

from __future__ import annotations

import argparse
import json
import math
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
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bpe_tokenizer import ENDOFTEXT, IM_END, load_tokenizer, render_prompt, save_tokenizer
from task import Problem, make_splits

from branchwise.orchestrator.help_format import HelpWithDefaults

HERE = Path(__file__).resolve().parent

IGNORE = -100
TOKENIZER_DIR = HERE / "tokenizer"
MAX_POSITIONS = 512


def encode_problem(tokenizer: PreTrainedTokenizerBase, problem: Problem) -> tuple[list[int], int]:
    """Token ids of prompt + solution + `<|im_end|>`, and the length of the unlabelled prompt.

    Prompt and answer are tokenized apart, as generation sees them: the prompt ends with
    `"assistant\\n"`, and the answer's ids follow it.
    """
    prompt = tokenizer(render_prompt(problem.question), add_special_tokens=False)["input_ids"]
    target = tokenizer(problem.solution + IM_END, add_special_tokens=False)["input_ids"]
    return prompt + target, len(prompt)


def qwen2_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int,
    layers: int,
    heads: int,
    kv_heads: int,
    intermediate_size: int,
) -> Qwen2Config:
    """A small Qwen2 config (tied embeddings, as Qwen2.5's small models) for this tokenizer."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
    )
    # Plain attention measured faster than SDPA for these tiny shapes on CPU.
    config._attn_implementation = "eager"
    return config


def write_generation_config(folder: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """Stop at `<|im_end|>` or `<|endoftext|>`, as Qwen2.5's instruct models do."""
    config = {
        "bos_token_id": tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        "eos_token_id": [
            tokenizer.convert_tokens_to_ids(IM_END),
            tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        ],
        "pad_token_id": tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        "max_length": MAX_POSITIONS,
    }
    (folder / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")


def make_batch(
    rows: Sequence[tuple[list[int], int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (prompt and padding ignored)."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (seq, prompt_len) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, prompt_len : len(seq)] = torch.tensor(seq[prompt_len:])
    return ids, mask, labels


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults,
        description="Train the testbed policy.",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "models" / "policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=60_000)
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER_DIR)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument(
        "--checkpoint-every", type=int, default=0, help="also save to OUT/step-N (calibration)"
    )
    parser.add_argument(
        "--init-from", type=Path, default=None, help="grow from this policy folder (same width)"
    )
    parser.add_argument(
        "--order-seed", type=int, default=None, help="seed of the data order (default: --seed)"
    )
    parser.add_argument(
        "--resume-dir", type=Path, default=None, help="save/resume the training state here"
    )
    parser.add_argument("--state-every", type=int, default=25)
    return parser.parse_args(argv)


def grow_from(model: Qwen2ForCausalLM, source: Path) -> None:
    """Copy a smaller policy's weights into `model`; its extra layers start as the identity.

    The source must have the same width (hidden size, heads, MLP) and at most as many layers.
    Zeroing a new layer's attention output and MLP down projection makes it add nothing to the
    residual stream, so the grown model computes exactly what the source computed.
    """
    small = Qwen2ForCausalLM.from_pretrained(source, dtype=torch.float32)
    n_small = small.config.num_hidden_layers
    if n_small > model.config.num_hidden_layers:
        raise SystemExit(
            f"--init-from: {source} has {n_small} layers, more than --layers "
            f"{model.config.num_hidden_layers}"
        )
    missing, unexpected = model.load_state_dict(small.state_dict(), strict=False)
    if unexpected:
        raise SystemExit(f"--init-from: {source} has weights this shape lacks: {unexpected[:3]}")
    with torch.no_grad():
        for layer in model.model.layers[n_small:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    print(f"grown from {source}: {n_small} layers copied, {len(missing)} new tensors", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed if args.order_seed is None else args.order_seed)
    tokenizer = load_tokenizer(args.tokenizer)
    splits = make_splits(args.seed, {"eval": 600, "val": 300, "train": args.train_size})
    rows = [encode_problem(tokenizer, p) for p in splits["train"]]
    config = qwen2_config(
        tokenizer,
        hidden_size=args.hidden,
        layers=args.layers,
        heads=args.heads,
        kv_heads=args.kv_heads,
        intermediate_size=args.intermediate,
    )
    model = Qwen2ForCausalLM(config)
    if args.init_from is not None:
        grow_from(model, args.init_from)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"policy: {n_params:,} parameters, {len(rows):,} training problems", flush=True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01
    )
    order: list[int] = []
    first_step, spent = 0, 0.0
    state_file = args.resume_dir / "state.pt" if args.resume_dir is not None else None
    if state_file is not None and state_file.exists():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order, first_step, spent = state["order"], state["step"], state["seconds"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {first_step} from {state_file}", flush=True)
    start = time.perf_counter() - spent
    model.train()
    for step in range(first_step, args.steps):
        if len(order) < args.batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order.extend(fresh)
        batch_idx, order = order[: args.batch_size], order[args.batch_size :]
        ids, mask, labels = make_batch([rows[i] for i in batch_idx], tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - start
            print(f"step {step:5d}  loss {loss.item():.4f}  {elapsed:6.0f}s", flush=True)
        if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
            elapsed = time.perf_counter() - start
            save_policy(
                args.out / f"step-{step + 1}", model, tokenizer, vars(args), n_params, elapsed
            )
        if state_file is not None and (step + 1) % args.state_every == 0:
            save_state(state_file, model, optimizer, order, rng, step + 1, start)
        if state_file is not None and (state_file.parent / "STOP").exists():
            save_state(state_file, model, optimizer, order, rng, step + 1, start)
            print(f"STOP found: state saved after step {step + 1}; rerun to resume", flush=True)
            return
    seconds = time.perf_counter() - start
    save_policy(args.out, model, tokenizer, vars(args), n_params, seconds)
    print(f"saved to {args.out} after {seconds:.0f}s of training", flush=True)


def save_state(
    path: Path,
    model: Qwen2ForCausalLM,
    optimizer: torch.optim.Optimizer,
    order: list[int],
    rng: random.Random,
    next_step: int,
    start: float,
) -> None:
    """Everything a resumed run needs to continue as if it had not stopped (atomic replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "order": order,
        "rng": rng.getstate(),
        "torch_rng": torch.get_rng_state(),
        "step": next_step,
        "seconds": time.perf_counter() - start,
    }
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def save_policy(
    out: Path,
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    args: dict[str, object],
    n_params: int,
    seconds: float,
) -> None:
    """Write weights, tokenizer, generation config and a record of how they were made."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = ["Qwen2ForCausalLM"]
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out, tokenizer)
    write_generation_config(out, tokenizer)
    info = {
        "parameters": n_params,
        "training_seconds": round(seconds, 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in args.items()},
    }
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()

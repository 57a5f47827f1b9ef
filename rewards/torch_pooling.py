"""A token-classification reward model run with transformers and torch in this process.

The forward pass runs in a worker thread so the event loop keeps serving searches; batches are
right-padded with an attention mask (a causal model's logits at real positions do not depend
on the padding after them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np


class TorchTokenScores:
    """``AutoModelForTokenClassification`` + ``AutoTokenizer`` from one folder."""

    name = "torch"

    def __init__(self, model: str, *, dtype: str = "float32", threads: int | None = None) -> None:
        self.model_path = model
        self.dtype = dtype
        self.threads = threads
        self.max_length: int | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = asyncio.Lock()
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:  # concurrent first calls load the model once
            if self._model is None:
                await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        dtype = getattr(torch, self.dtype)
        model = AutoModelForTokenClassification.from_pretrained(self.model_path, dtype=dtype)
        model.eval()
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0)) or None
        self._model = model

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
            logits = self._model(input_ids=input_ids, attention_mask=mask).logits
        return [logits[row, positions].float().numpy() for row, (_, positions) in enumerate(items)]

    async def close(self) -> None:
        self._model = None
        self._tokenizer = None

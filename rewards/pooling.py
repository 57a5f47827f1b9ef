"""The backend protocol of token-level reward models, and the activation applied to logits.

A reward model here is a token classifier: for every input token it gives one logit per class
(a PRM trained as ``LlamaForTokenClassification`` with 2 labels, say). Backends (vLLM in
process, a vLLM server over HTTP, transformers) all return *raw logits* at the positions they
are asked about, and the scorer applies the activation itself, so the same model gives the
same score through every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

Activation = Literal["softmax", "sigmoid", "none"]


class TokenScoreBackend(Protocol):
    """Serves one token-classification model."""

    name: str
    max_length: int | None
    """Longest input (in tokens) the model takes; None when the backend cannot say."""

    async def start(self) -> None: ...

    async def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        """Token ids of ``text`` under the model's own tokenizer."""
        ...

    async def logits_at(self, items: Sequence[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        """For each (token ids, positions): the logits at those positions, (positions, classes)."""
        ...

    async def close(self) -> None: ...


def class_score(logits: np.ndarray, activation: Activation, label: int) -> np.ndarray:
    """One score per row of ``logits`` (rows, classes): the activated value of ``label``."""
    rows = np.asarray(logits, dtype=np.float64)
    if rows.ndim != 2 or not 0 <= label < rows.shape[1]:
        raise ValueError(f"label {label} does not fit logits of shape {rows.shape}")
    if activation == "softmax":
        shifted = rows - rows.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        return np.asarray(probs[:, label])
    if activation == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-rows[:, label])))
    return np.asarray(rows[:, label])

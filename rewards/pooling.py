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


def rows_at(
    data: np.ndarray, ids: Sequence[int], positions: Sequence[int], step_tag_id: int | None
) -> np.ndarray:
    """The rows of a pooling output at ``positions`` of ``ids``, as (positions, classes).

    ``data`` is what the pooler returned: one row per token (ALL pooling), one row per step tag
    (STEP pooling with ``step_tag_id``: rows for the tokens equal to it, in order), or one
    vector for the whole sequence (``classify``; only the last position can be asked for).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        if list(positions) != [len(ids) - 1]:
            raise ValueError("a sequence classifier is read at the last token only")
        return data[None, :]
    if data.shape[0] == len(ids):
        return data[list(positions)]
    tags = [i for i, t in enumerate(ids) if t == step_tag_id]
    if step_tag_id is None or data.shape[0] != len(tags):
        raise ValueError(
            f"the pooler returned {data.shape[0]} rows for {len(ids)} tokens"
            + (f" and {len(tags)} step tags (id {step_tag_id})" if step_tag_id is not None else "")
        )
    row_of = {p: r for r, p in enumerate(tags)}
    missing = [p for p in positions if p not in row_of]
    if missing:
        raise ValueError(f"positions {missing} are not step tags (id {step_tag_id})")
    return data[[row_of[p] for p in positions]]


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

"""A reward model on vLLM's pooling runner, in this process.

The only module that imports vllm for pooling. It runs its own ``AsyncLLM`` beside the
policy's (each has its own engine-core process), with one pooling task (``token_classify``
for PRMs, ``classify`` for sequence classifiers), and always asks for raw logits
(``use_activation=False``: with one label vLLM would otherwise apply a sigmoid) so the scorer
applies the activation the recipe states, as on every other backend. A Qwen-style PRM pools
only its step-tag rows: ``step_tag_id`` is the tag's id in this model's tokenizer (vLLM's
default for that architecture, 151651, is the real Qwen tokenizer's). Requests go in
concurrently; vLLM batches them itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from branchwise.core.cpu_layout import CpuLayout, laid_out
from branchwise.core.errors import ScorerError
from branchwise.rewards.pooling import rows_at


def single_token_id(tokenizer: Any, text: str) -> int:
    """The one id ``text`` encodes to (a step tag must be one token to be pooled by id)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ScorerError(f"step tag {text!r} is {len(ids)} tokens in this tokenizer, not one")
    return int(ids[0])


class VLLMTokenScores:
    """``AsyncLLM(runner="pooling", pooler_config=PoolerConfig(task=..., step_tag_id=...))``."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.1,
        enforce_eager: bool = True,
        max_num_seqs: int = 64,
        cpu_layout: CpuLayout = "auto",
        task: str = "token_classify",
        step_tag: str | None = None,
    ) -> None:
        self.model_path = model
        self.task = task
        self.step_tag = step_tag
        self.step_tag_id: int | None = None
        self.cpu_layout: CpuLayout = cpu_layout
        self.options: dict[str, Any] = {
            "dtype": dtype,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "max_num_seqs": max_num_seqs,
        }
        self.max_length: int | None = max_model_len
        self._llm: Any = None
        self._tokenizer: Any = None
        self._ids = itertools.count()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._llm is not None:
                return
            from transformers import AutoTokenizer
            from vllm.config import PoolerConfig
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            if self.step_tag is not None:
                tokenizer = AutoTokenizer.from_pretrained(self.model_path)
                self.step_tag_id = single_token_id(tokenizer, self.step_tag)
            pooler = PoolerConfig(task=self.task, step_tag_id=self.step_tag_id)  # type: ignore[arg-type]
            args = AsyncEngineArgs(
                model=self.model_path,
                tokenizer=self.model_path,
                runner="pooling",
                pooler_config=pooler,
                disable_log_stats=True,
                **self.options,
            )
            try:
                with laid_out(self.cpu_layout):
                    self._llm = AsyncLLM.from_engine_args(args)
            except Exception as exc:
                message = f"vLLM pooling failed to start on {self.model_path}: {exc}"
                raise ScorerError(message) from exc
            self._tokenizer = self._llm.get_tokenizer()
            self.max_length = int(self._llm.model_config.max_model_len)

    async def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        await self.start()
        return [int(t) for t in self._tokenizer.encode(text, add_special_tokens=add_special_tokens)]

    async def logits_at(self, items: Sequence[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        await self.start()
        return list(await asyncio.gather(*(self._one(ids, pos) for ids, pos in items)))

    async def _one(self, ids: list[int], positions: list[int]) -> np.ndarray:
        from vllm.inputs import TokensPrompt
        from vllm.pooling_params import PoolingParams

        params = PoolingParams(task=self.task, use_activation=False)  # type: ignore[arg-type]
        request_id = f"prm-{next(self._ids)}"
        final: Any = None
        async for output in self._llm.encode(
            TokensPrompt(prompt_token_ids=ids), params, request_id=request_id
        ):
            final = output
        if final is None:
            raise ScorerError(f"vLLM pooling returned nothing for {request_id}")
        data = final.outputs.data.float().cpu().numpy()
        try:
            return rows_at(data, ids, positions, self.step_tag_id)
        except ValueError as exc:
            raise ScorerError(f"vLLM pooling on {self.model_path}: {exc}") from exc

    async def close(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

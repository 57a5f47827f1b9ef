"""A token-classification reward model on vLLM's pooling runner, in this process.

The only module that imports vllm for pooling. It runs its own ``AsyncLLM`` beside the
policy's (each has its own engine-core process), with the ``token_classify`` pooler, and
asks for raw logits (``use_activation=False``) so the scorer applies the same activation
as every other backend. Requests go in concurrently; vLLM batches them itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.errors import ScorerError


class VLLMTokenScores:
    """``AsyncLLM(runner="pooling", pooler_config=PoolerConfig(task="token_classify"))``."""

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
    ) -> None:
        self.model_path = model
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
            from vllm.config import PoolerConfig
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            args = AsyncEngineArgs(
                model=self.model_path,
                tokenizer=self.model_path,
                runner="pooling",
                pooler_config=PoolerConfig(task="token_classify"),
                disable_log_stats=True,
                **self.options,
            )
            try:
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

        params = PoolingParams(task="token_classify", use_activation=False)
        request_id = f"prm-{next(self._ids)}"
        final: Any = None
        async for output in self._llm.encode(
            TokensPrompt(prompt_token_ids=ids), params, request_id=request_id
        ):
            final = output
        if final is None:
            raise ScorerError(f"vLLM pooling returned nothing for {request_id}")
        data = final.outputs.data
        return np.asarray(data.float().cpu().numpy()[positions], dtype=np.float32)

    async def close(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

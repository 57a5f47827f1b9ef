"""A reward model behind a vLLM server's ``/pooling`` endpoint.

Start the server with the pooling runner and the format's task, e.g.
``python -m vllm.entrypoints.openai.api_server --model <prm> --runner pooling
--pooler-config '{"task": "token_classify"}'`` (a Qwen-style PRM: add ``"step_tag_id": <id of
<extra_0>>``; a sequence classifier: ``"task": "classify"``). Inputs travel as token ids
(tokenized by the server's ``/tokenize``, or locally with the same tokenizer when
``tokenizer`` names its folder), so the positions the scorer reads are exactly the server's
tokens. Raw logits are asked for (``use_activation: false``) whatever the task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from branchwise.core.errors import ScorerError
from branchwise.rewards.pooling import rows_at


class HTTPTokenScores:
    """One vLLM pooling server; ``model`` is the name it serves."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout: float = 60.0,
        max_length: int | None = None,
        tokenizer: str | None = None,
        task: str = "token_classify",
        step_tag: str | None = None,
    ) -> None:
        self.task = task
        self.step_tag = step_tag
        self._step_tag_id: int | None = None
        self.tokenizer_path = tokenizer
        self._tokenizer: Any = None
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_length = max_length
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self.start()
        assert self._client is not None
        where = f"reward server {self.base_url}{path}"
        try:
            async with self._client.post(self.base_url + path, json=body) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as exc:
            raise ScorerError(f"{where}: timed out after {self.timeout}s") from exc
        except aiohttp.ClientError as exc:
            raise ScorerError(f"{where}: {exc!r}") from exc
        if status != 200:
            raise ScorerError(f"{where}: HTTP {status}: {text[:300]}")
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            raise ScorerError(f"{where}: not JSON: {text[:300]}") from exc
        return data

    async def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        if self.tokenizer_path is not None:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
            ids = self._tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
            return [int(i) for i in ids]
        body = {"model": self.model, "prompt": text, "add_special_tokens": add_special_tokens}
        data = await self._post("/tokenize", body)
        return [int(t) for t in data["tokens"]]

    async def logits_at(self, items: Sequence[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        body = {
            "model": self.model,
            "input": [ids for ids, _ in items],
            "task": self.task,
            "use_activation": False,
        }
        data = await self._post("/pooling", body)
        rows = sorted(data["data"], key=lambda d: d["index"])
        if len(rows) != len(items):
            raise ScorerError(f"reward server returned {len(rows)} results for {len(items)}")
        if self.step_tag is not None and self._step_tag_id is None:
            tag = await self.encode(self.step_tag, add_special_tokens=False)
            if len(tag) != 1:
                raise ScorerError(f"step tag {self.step_tag!r} is {len(tag)} tokens, not one")
            self._step_tag_id = tag[0]
        out = []
        for row, (ids, positions) in zip(rows, items, strict=True):
            try:
                out.append(rows_at(np.asarray(row["data"]), ids, positions, self._step_tag_id))
            except ValueError as exc:
                raise ScorerError(f"reward server {self.base_url}: {exc}") from exc
        return out

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

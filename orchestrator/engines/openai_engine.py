"""OpenAI-compatible ``/v1/completions`` on one or several vLLM servers.

Prompts go as token ids, so a child extends its parent's exact tokens on the server too.
Transient failures (5xx, 429 rate limits, 408, time-outs, refused connections) are retried
with exponential backoff (or the server's ``Retry-After``, when it sends one), on the next
server when there are several. A rate limit (asyncio-throttle) and a concurrency cap protect
the fleet; requests of one problem stick to one server (affinity) so that its prefix cache is
reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
from asyncio_throttle.throttler import Throttler

from core.errors import EngineError, EngineTimeout
from orchestrator.engines.types import (
    Completion,
    FinishReason,
    GenerationRequest,
    GenerationResult,
)
from orchestrator.prompting import ChatMessage, RenderedPrompt

if TYPE_CHECKING:
    from orchestrator.engines.config import OpenAIEngineConfig

_RETRYABLE = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)
_RETRYABLE_STATUS = frozenset({408, 429})  # request timeout, too many requests
_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is capped, not obeyed blindly


class OpenAIEngine:
    """Engine over HTTP; each server keeps a count of requests in flight for load spread."""

    name = "openai"

    def __init__(
        self, config: OpenAIEngineConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.servers = [url.rstrip("/") for url in config.base_urls]
        self._inflight = [0] * len(self.servers)
        self._transport = transport
        self._tokenizer: Any = None
        self._client: httpx.AsyncClient | None = None
        self._limit = asyncio.Semaphore(config.max_concurrency)
        self._throttle = _throttler(config.requests_per_second)
        self.retries = 0

    async def __aenter__(self) -> Self:
        headers = {}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise EngineError(f"environment variable {self.config.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            timeout=self.config.timeout,
            headers=headers,
            transport=self._transport,
            limits=httpx.Limits(max_connections=self.config.max_concurrency),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineError("OpenAIEngine used outside `async with`")
        return self._client

    async def tokenize(self, text: str) -> tuple[int, ...]:
        tokenizer = self._local_tokenizer()
        if tokenizer is not None:
            return tuple(int(t) for t in tokenizer.encode(text, add_special_tokens=True))
        body = {"model": self.config.model, "prompt": text, "add_special_tokens": True}
        data = await self._post("/tokenize", body, affinity=None, request_id="tokenize")
        return tuple(int(t) for t in data["tokens"])

    async def tokenize_chat(
        self, messages: Sequence[ChatMessage], *, chat_template: str | None = None
    ) -> RenderedPrompt:
        """The served model's chat template (or ``chat_template``), with the generation prompt.

        Rendered by the local tokenizer when the config names one, else by the server's
        ``/tokenize`` (a ``chat_template`` from the recipe then needs the server started with
        ``--trust-request-chat-template``).
        """
        turns = [m.as_dict() for m in messages]
        tokenizer = self._local_tokenizer()
        if tokenizer is not None:
            text = str(
                tokenizer.apply_chat_template(
                    turns, tokenize=False, add_generation_prompt=True, chat_template=chat_template
                )
            )
            ids = tokenizer.encode(text, add_special_tokens=False)
            return RenderedPrompt(text, tuple(int(t) for t in ids))
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": turns,
            "add_generation_prompt": True,
            "add_special_tokens": False,
        }
        if chat_template is not None:
            body["chat_template"] = chat_template
        data = await self._post("/tokenize", body, affinity=None, request_id="tokenize-chat")
        ids = tuple(int(t) for t in data["tokens"])
        return RenderedPrompt(await self._detokenize(ids), ids)

    async def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids (special tokens skipped when decoded locally)."""
        tokenizer = self._local_tokenizer()
        if tokenizer is not None:
            return str(tokenizer.decode(list(token_ids), skip_special_tokens=True))
        return await self._detokenize(tuple(token_ids))

    async def _detokenize(self, token_ids: tuple[int, ...]) -> str:
        body = {"model": self.config.model, "tokens": list(token_ids)}
        data = await self._post("/detokenize", body, affinity=None, request_id="detokenize")
        return str(data["prompt"])

    def _local_tokenizer(self) -> Any:
        """The tokenizer named by the config (loaded once), or None to ask the server."""
        if self.config.tokenizer is None:
            return None
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.config.tokenizer, local_files_only=True
                )
            except (OSError, ValueError) as exc:
                raise EngineError(
                    f"engine.tokenizer: cannot load {self.config.tokenizer}: {exc}"
                ) from None
        return self._tokenizer

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.config.model,
            "prompt": list(request.prompt_token_ids),
            "n": request.n,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "stop": list(s.stop),
            "include_stop_str_in_output": True,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": True,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.logprobs is not None:
            body["logprobs"] = s.logprobs
        data = await self._post(
            "/v1/completions", body, affinity=request.affinity, request_id=request.request_id
        )
        return await self._with_whole_tokens(_to_result(data, request))

    async def _with_whole_tokens(self, result: GenerationResult) -> GenerationResult:
        """Completions whose text is the decode of all their tokens.

        The server cuts a completion's text at the stop string, even when the stop string
        ends inside the last token; only completions a stop string ended can be short, so
        only those are decoded again (locally, or by the server's ``/detokenize``).
        """
        fixed = list(result.completions)
        for index, completion in enumerate(fixed):
            if completion.ended_by_stop_string:
                text = await self.decode(completion.token_ids)
                if text != completion.text:
                    fixed[index] = replace(completion, text=text)
        return replace(result, completions=tuple(fixed))

    def _pick_server(self, affinity: str | None, attempt: int) -> int:
        if affinity is not None:
            digest = hashlib.blake2b(affinity.encode(), digest_size=4).digest()
            return (int.from_bytes(digest, "big") + attempt) % len(self.servers)
        least = min(self._inflight)
        candidates = [i for i, load in enumerate(self._inflight) if load == least]
        return candidates[attempt % len(candidates)]

    async def _post(
        self, path: str, body: dict[str, Any], *, affinity: str | None, request_id: str
    ) -> dict[str, Any]:
        delay = self.config.backoff_seconds
        last_error = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            server_wait = 0.0
            server = self._pick_server(affinity, attempt)
            url = self.servers[server] + path
            try:
                async with self._limit:
                    if self._throttle is not None:
                        async with self._throttle:
                            pass
                    self._inflight[server] += 1
                    try:
                        response = await self.client.post(
                            url, json=body, headers={"X-Request-Id": request_id}
                        )
                    finally:
                        self._inflight[server] -= 1
            except httpx.TimeoutException:
                last_error = f"timed out after {self.config.timeout}s at {url}"
                timed_out = True
            except _RETRYABLE as exc:
                last_error = f"{type(exc).__name__} at {url}: {exc}"
                timed_out = False
            else:
                if response.status_code < 400:
                    try:
                        payload: dict[str, Any] = response.json()
                    except ValueError:
                        raise EngineError(
                            f"{url} answered {request_id} with non-JSON: {response.text[:200]!r}"
                        ) from None
                    return payload
                detail = response.text[:300]
                status = response.status_code
                if status < 500 and status not in _RETRYABLE_STATUS:
                    raise EngineError(f"{url} rejected request {request_id}: {status} {detail}")
                last_error = f"{url} answered {status}: {detail}"
                timed_out = status == 408
                server_wait = _retry_after(response) or 0.0
            if attempt < self.config.max_retries:
                self.retries += 1
                await asyncio.sleep(max(delay, server_wait))  # the server's wait is not doubled
                delay *= 2
        message = (
            f"request {request_id} failed after {self.config.max_retries + 1} tries: {last_error}"
        )
        raise EngineTimeout(message) if timed_out else EngineError(message)


def _retry_after(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds (delta form), capped; None if absent or a date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _throttler(per_second: float | None) -> Throttler | None:
    """A throttle for exactly ``per_second`` requests a second (fractions included)."""
    if per_second is None:
        return None
    if per_second >= 1 and float(per_second).is_integer():
        return Throttler(rate_limit=int(per_second), period=1.0)
    return Throttler(rate_limit=1, period=1.0 / per_second)


def _to_result(data: dict[str, Any], request: GenerationRequest) -> GenerationResult:
    usage = data.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or len(request.prompt_token_ids))
    cached = int(details.get("cached_tokens") or 0)
    k = request.sampling.logprobs
    completions = []
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != request.n:
        raise EngineError(f"malformed completion response for {request.request_id}: {data!r:.300}")
    for choice in sorted(choices, key=lambda c: c["index"]):
        if choice.get("token_ids") is None and choice.get("text"):
            raise EngineError(
                f"server returned no token_ids for {request.request_id}; it must support "
                "`return_token_ids` (vLLM >= 0.10.2) so children extend exact tokens"
            )
        chosen: tuple[float, ...] = ()
        tops: tuple[tuple[float, ...], ...] = ()
        logprobs = choice.get("logprobs")
        if k is not None and logprobs:
            chosen = tuple(
                float(v) if v is not None else 0.0 for v in logprobs.get("token_logprobs") or []
            )
            tops = tuple(
                tuple(sorted((float(v) for v in (top or {}).values()), reverse=True)[:k])
                for top in logprobs.get("top_logprobs") or []
            )
        reason = choice.get("finish_reason")
        finish: FinishReason = reason if reason in ("stop", "length") else "abort"
        completions.append(
            Completion(
                token_ids=tuple(int(t) for t in choice.get("token_ids") or ()),
                text=choice["text"],
                finish_reason=finish,
                stop_reason=choice.get("stop_reason"),
                token_logprobs=chosen,
                top_logprobs=tops,
                prompt_tokens=prompt_tokens,
                cached_prompt_tokens=cached,
            )
        )
    return GenerationResult(
        tuple(completions), prompt_tokens=prompt_tokens, cached_prompt_tokens=cached
    )

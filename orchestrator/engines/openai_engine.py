"""OpenAI-compatible ``/v1/completions`` on one or several vLLM servers.

Prompts go as token ids, so a child extends its parent's exact tokens on the server too.
Transient failures (5xx, 429 rate limits, 408, time-outs, refused or broken connections) are
retried with exponential backoff (or the server's ``Retry-After``, when it sends one); a
request whose server failed is sent to another healthy server at once (fail-over). Only an
answer counts: a request that failed produced nothing the caller sees, so nothing is counted
twice. A rate limit (asyncio-throttle) and a concurrency cap protect the fleet; routing is
least outstanding requests with prefix affinity (``orchestrator.engines.fleet``), and with
several servers a background health check marks servers down and up again.

The HTTP client is aiohttp (``http_client: httpx`` keeps httpx, if installed): its cost per
request is flat in the number of requests in flight (``benchmarks/http_client.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from asyncio_throttle.throttler import Throttler

from branchwise.core.errors import EngineError, EngineTimeout
from branchwise.orchestrator.engines.fleet import ServerPool
from branchwise.orchestrator.engines.http_transport import (
    AiohttpTransport,
    HTTPResponse,
    HTTPTransport,
    HttpxTransport,
    TransportError,
    TransportTimeout,
)
from branchwise.orchestrator.engines.stop_tokens import (
    NO_STOP_TOKENS,
    StopTokenCache,
    StopTokens,
)
from branchwise.orchestrator.engines.types import (
    Completion,
    FinishReason,
    GenerationRequest,
    GenerationResult,
)
from branchwise.orchestrator.prompting import ChatMessage, RenderedPrompt

if TYPE_CHECKING:
    import httpx

    from branchwise.orchestrator.engines.config import OpenAIEngineConfig

_RETRYABLE_STATUS = frozenset({408, 429})  # request timeout, too many requests
_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is capped, not obeyed blindly
_HEALTH_TIMEOUT = 5.0  # seconds for one GET /health


class OpenAIEngine:
    """Engine over HTTP on a pool of servers (load, health and affinity in ``self.pool``).

    ``transport`` replaces the HTTP client: an :class:`HTTPTransport`, or an httpx transport
    (``httpx.MockTransport`` in tests) to run httpx over it.
    """

    name = "openai"

    @classmethod
    def from_config(cls, config: OpenAIEngineConfig, base_dir: Path | None = None) -> OpenAIEngine:
        """The engine of a recipe's config; a relative ``tokenizer`` is under ``base_dir``."""
        if config.tokenizer is not None and base_dir is not None:
            path = Path(config.tokenizer)
            if not path.is_absolute():
                config = config.model_copy(update={"tokenizer": str((base_dir / path).resolve())})
        return cls(config)

    def __init__(
        self,
        config: OpenAIEngineConfig,
        *,
        transport: HTTPTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.pool = ServerPool(config.base_urls)
        self.servers = self.pool.urls
        self._given_transport = transport
        self._transport: HTTPTransport | None = None
        self._tokenizer: Any = None
        self._served_probe: asyncio.Future[Any] | None = None
        self._probe_unanswered = False
        self._pieces: dict[int, asyncio.Future[str]] = {}
        self._stop_tokens = StopTokenCache()
        self._limit = asyncio.Semaphore(config.in_flight_limit)
        self._throttle = _throttler(config.requests_per_second)
        self._health_task: asyncio.Task[None] | None = None
        self.retries = 0

    async def __aenter__(self) -> Self:
        headers = {}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise EngineError(f"environment variable {self.config.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        given = self._given_transport
        wrap = given if hasattr(given, "handle_async_request") else None  # an httpx transport
        if given is not None and wrap is None:
            self._transport = cast("HTTPTransport", given)
        elif wrap is not None or self.config.http_client == "httpx":
            self._transport = HttpxTransport(
                headers=headers,
                max_connections=self.config.in_flight_limit,
                transport=cast("httpx.AsyncBaseTransport | None", wrap),
            )
        else:
            self._transport = AiohttpTransport(
                headers=headers, max_connections=self.config.in_flight_limit
            )
        if len(self.servers) > 1 and self.config.health_check_seconds is not None:
            self._health_task = asyncio.create_task(self._watch_health())
        await self._warm_up()
        return self

    async def _warm_up(self) -> None:
        """Load the tokenizer and run the served-tokenizer probe now, not in the first request.

        Loading transformers and a tokenizer takes seconds; done here (off the event loop),
        the engine is ready when its start returns. A probe no server answered (none is up
        yet) is asked again when a tokenizer is first needed.
        """
        if self.config.tokenizer is not None:
            await asyncio.to_thread(self._local_tokenizer)
            return
        await self._served_tokenizer()
        if self._probe_unanswered:
            self._served_probe = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    @property
    def transport(self) -> HTTPTransport:
        if self._transport is None:
            raise EngineError("OpenAIEngine used outside `async with`")
        return self._transport

    async def _watch_health(self) -> None:
        """Ask every server's ``/health`` periodically; mark it down or back up by the answer.

        A failed connection marks a server down at once (and sends the request elsewhere);
        the check also catches a server that still accepts connections but whose engine is
        dead (vLLM then answers ``/health`` with 5xx), and brings servers back.
        """
        assert self.config.health_check_seconds is not None
        while True:
            await asyncio.sleep(self.config.health_check_seconds)
            await asyncio.gather(*(self._check(i) for i in range(len(self.servers))))

    async def _check(self, server: int) -> None:
        url = self.servers[server] + "/health"
        try:
            response = await self.transport.request("GET", url, timeout=_HEALTH_TIMEOUT)
        except TransportError as exc:
            self.pool.mark_down(server, f"health check: {exc}")
            return
        if response.status == 200:
            self.pool.mark_up(server)
        else:
            self.pool.mark_down(server, f"health check answered {response.status}")

    async def tokenize(self, text: str) -> tuple[int, ...]:
        tokenizer = await self._tokenizer_here()
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
        """Text of token ids (special tokens skipped, as the server skips them)."""
        tokenizer = await self._tokenizer_here()
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

    async def _served_tokenizer(self) -> Any:
        """The served model's own tokenizer folder, when it is on this machine (found once).

        Asked only when the config names no ``tokenizer``: the servers' ``/v1/models`` names
        the folder the model was loaded from (its ``root``); it is used for plain encoding and
        decoding if it loads here and encodes and decodes a probe exactly as the server does.
        Chat prompts are still rendered by the server, whose chat template may be its own.
        """
        if self._served_probe is None:
            self._served_probe = asyncio.ensure_future(self._find_served_tokenizer())
        probe = self._served_probe
        found = await asyncio.shield(probe)
        if self._probe_unanswered and self._served_probe is probe:
            self._served_probe = None  # no server answered (none up yet): ask again next time
        return found

    async def _find_served_tokenizer(self) -> Any:
        if not self.config.local_tokenizer:
            return None
        root = None
        self._probe_unanswered = True
        for url in self.servers:
            try:
                response = await self.transport.request("GET", url + "/v1/models", timeout=10)
                self._probe_unanswered = False
                models = response.json()["data"]
                root = next(m.get("root") for m in models if m.get("id") == self.config.model)
                break
            except (TransportError, ValueError, KeyError, TypeError, StopIteration):
                continue
        if not isinstance(root, str) or not os.path.isdir(root):
            return None
        try:
            tokenizer = await asyncio.to_thread(_load_tokenizer, root)
        except (ImportError, OSError, ValueError):
            return None
        probe = "Ann has 12 pens. She buys 30 more.\n12+30=42\n\nAnswer: 42"
        body = {"model": self.config.model, "prompt": probe, "add_special_tokens": True}
        try:
            data = await self._post("/tokenize", body, affinity=None, request_id="probe")
            ids = [int(t) for t in data["tokens"]]
            served_text = await self._detokenize(tuple(ids))
        except (EngineError, KeyError, TypeError, ValueError):
            return None
        local = [int(t) for t in tokenizer.encode(probe, add_special_tokens=True)]
        if local != ids or tokenizer.decode(ids, skip_special_tokens=True) != served_text:
            return None
        return tokenizer

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
        stops = await self.prepare_stop_tokens(s.stop)
        if stops.held:
            body["stop_token_ids"] = stops.ids
        if s.logprobs is not None:
            body["logprobs"] = s.logprobs
        data = await self._post(
            "/v1/completions", body, affinity=request.affinity, request_id=request.request_id
        )
        return await self._with_whole_tokens(_to_result(data, request, stops))

    async def prepare_stop_tokens(self, stop: Sequence[str]) -> StopTokens:
        """``stop``'s stop tokens (found once; none without a tokenizer here, or when the
        config turns them off). Asked at start, the first request that stops does not wait."""
        if not self.config.stop_tokens:
            return NO_STOP_TOKENS
        return await self._stop_tokens.get(stop, self._tokenizer_here)

    async def _tokenizer_here(self) -> Any:
        """The tokenizer on this machine (the config's, or the served folder's), or None."""
        return self._local_tokenizer() or await self._served_tokenizer()

    async def _with_whole_tokens(self, result: GenerationResult) -> GenerationResult:
        """Completions whose text is the decode of all their tokens.

        The server cuts a completion's text at the stop string, even when the stop string
        ends inside the last token; only completions a stop string ended can be short, so
        only those are looked at: decoded locally when a tokenizer is here, else completed
        from the last token's own text (:meth:`_whole_text`), and only where that cannot be
        exact decoded by the server's ``/detokenize``.
        """
        cut = [i for i, c in enumerate(result.completions) if c.ended_by_stop_string]
        if not cut:
            return result
        tokenizer = await self._tokenizer_here()
        if tokenizer is not None:
            texts = [
                str(
                    tokenizer.decode(
                        list(result.completions[i].token_ids), skip_special_tokens=True
                    )
                )
                for i in cut
            ]
        else:
            texts = await asyncio.gather(*(self._whole_text(result.completions[i]) for i in cut))
        fixed = list(result.completions)
        for index, text in zip(cut, texts, strict=True):
            if text != fixed[index].text:
                fixed[index] = replace(fixed[index], text=text)
        return replace(result, completions=tuple(fixed))

    async def _whole_text(self, completion: Completion) -> str:
        """The server's text plus what its last token carries past a one-character stop string.

        The text ends at the first stop string; with a one-character stop string that lies in
        the last token (the text before it held none, or generation would have stopped), so
        the whole decode is the text plus the last token's characters after it. The last
        token's text is asked once per token id. A longer stop string may start in an earlier
        token, and a token that is not whole text (part of a UTF-8 character) decodes
        differently alone: those completions go to ``/detokenize``.
        """
        stop = completion.stop_reason
        if (
            isinstance(stop, str)
            and len(stop) == 1
            and stop != " "  # a lone token's decode may drop its leading space
            and completion.token_ids
            and completion.text.endswith(stop)
        ):
            piece = await self._piece(completion.token_ids[-1])
            at = piece.find(stop)
            if at >= 0 and "\ufffd" not in piece:
                return completion.text + piece[at + 1 :]
        return await self._detokenize(completion.token_ids)

    async def _piece(self, token_id: int) -> str:
        """One token's text, asked of the server once per id (concurrent asks share it)."""
        known = self._pieces.get(token_id)
        if known is None:
            known = asyncio.ensure_future(self._detokenize((token_id,)))
            self._pieces[token_id] = known
        try:
            return await asyncio.shield(known)
        except BaseException:
            if known.done():
                self._pieces.pop(token_id, None)  # failed: ask again next time
            raise

    async def _post(
        self, path: str, body: dict[str, Any], *, affinity: str | None, request_id: str
    ) -> dict[str, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode()
        delay = self.config.backoff_seconds
        last_error = "no attempt made"
        failed: set[int] = set()  # servers that failed this request (tried last next time)
        timed_out = False
        for attempt in range(self.config.max_retries + 1):
            server_wait = 0.0
            async with self._limit:
                if self._throttle is not None:
                    async with self._throttle:
                        pass
                server = self.pool.pick(affinity, failed)
                url = self.servers[server] + path
                self.pool.begin(server)
                try:
                    response = await self.transport.request(
                        "POST",
                        url,
                        body=payload,
                        headers={"X-Request-Id": request_id},
                        timeout=self.config.timeout,
                    )
                except TransportError as exc:
                    response = None
                    timed_out = isinstance(exc, TransportTimeout)
                    last_error = f"{exc} at {url}"
                    failed.add(server)
                    if not timed_out:  # a slow server is busy, not gone
                        self.pool.mark_down(server, str(exc))
                finally:
                    self.pool.end(server)
            if response is not None:
                if response.status < 400:
                    return _json(response, url, request_id)
                detail = response.text[:300]
                status = response.status
                if status < 500 and status not in _RETRYABLE_STATUS:
                    raise EngineError(f"{url} rejected request {request_id}: {status} {detail}")
                last_error = f"{url} answered {status}: {detail}"
                timed_out = status == 408
                failed.add(server)  # busy or broken: the next try goes elsewhere if it can
                server_wait = _retry_after(response) or 0.0
            if attempt < self.config.max_retries:
                self.retries += 1
                if response is None and not timed_out and self.pool.any_other_up(failed):
                    self.pool.failovers += 1  # a broken server; another can take it now
                    continue
                await asyncio.sleep(max(delay, server_wait))  # the server's wait is not doubled
                delay *= 2
        message = (
            f"request {request_id} failed after {self.config.max_retries + 1} tries: {last_error}"
        )
        raise EngineTimeout(message) if timed_out else EngineError(message)


def _load_tokenizer(folder: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _json(response: HTTPResponse, url: str, request_id: str) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = response.json()
    except ValueError:
        raise EngineError(
            f"{url} answered {request_id} with non-JSON: {response.text[:200]!r}"
        ) from None
    return payload


def _retry_after(response: HTTPResponse) -> float | None:
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


def _to_result(
    data: dict[str, Any], request: GenerationRequest, stops: StopTokens = NO_STOP_TOKENS
) -> GenerationResult:
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
                stop_reason=stops.reason(choice.get("stop_reason"), choice.get("text") or ""),
                token_logprobs=chosen,
                top_logprobs=tops,
                prompt_tokens=prompt_tokens,
                cached_prompt_tokens=cached,
            )
        )
    return GenerationResult(
        tuple(completions), prompt_tokens=prompt_tokens, cached_prompt_tokens=cached
    )

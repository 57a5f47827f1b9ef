"""The strategy server: recipes behind OpenAI's ``/v1/chat/completions``, ``/v1/completions``
and ``/v1/models``.

A request is checked in this order, each failure a clean JSON error in OpenAI's shape:
the Host it was sent to, when the server has no API key (403: a web page that rebinds its own
name to 127.0.0.1 cannot drive it), API key (401), a body that is not ``application/json``
(415: a page can post plain text or a form anywhere without asking, JSON only after a CORS
preflight, which this server never grants), body size (413), JSON (400: unparsable, nested
deeper than :data:`MAX_JSON_DEPTH`, or text that is not Unicode) and fields (400 naming the
field), model (404), a free search slot (429 with Retry-After; no queue), and the rendered
prompt's length (400 naming ``messages`` or ``prompt`` past ``max_prompt_tokens``). Then its
search runs on the model's engine; if the client disconnects, the search is cancelled and
its engine requests aborted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from branchwise.core.errors import EngineError
from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import unencodable
from branchwise.orchestrator.prompting import RenderedPrompt, render_conversation
from branchwise.orchestrator.recipe import Recipe
from branchwise.orchestrator.result_warnings import failure_of
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.server.catalog import ModelCatalog, ServedModel
from branchwise.orchestrator.server.errors import ApiError, error_body
from branchwise.orchestrator.server.protocol import Endpoint, SearchRequest, parse_request
from branchwise.orchestrator.server.responses import Reply, sse
from branchwise.orchestrator.server.search import SearchRun
from branchwise.orchestrator.server.settings import ServerLimits
from branchwise.orchestrator.server.streaming import EventStream, client_gone

log = logging.getLogger("branchwise.server")
TRACE_HEADER = "X-Branchwise-Trace-Id"
MAX_JSON_DEPTH = 32
"""Deepest nesting a request body may have (OpenAI's requests need five or six levels)."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass
class ServerStats:
    """What the server has done since it started (read by tests and the load benchmark)."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected_busy: int = 0
    running: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected_busy": self.rejected_busy,
            "running": self.running,
        }


class StrategyServer:
    """The state behind the app: models, limits, the API key and the search slots."""

    def __init__(
        self,
        catalog: ModelCatalog,
        limits: ServerLimits,
        api_key: str | None = None,
        *,
        hosts: frozenset[str] | None = None,
    ) -> None:
        """``hosts``: the only names a request's Host header may give (None: any)."""
        self.catalog = catalog
        self.limits = limits
        self._key = api_key.encode() if api_key else None
        self._hosts = hosts
        self.stats = ServerStats()
        self.started_at = int(time.time())

    # checks -------------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        if self._hosts is not None:
            host = request.headers.get("host", "")
            name = host.rpartition(":")[0] if not host.endswith("]") else host
            if (name or host).lower() not in self._hosts:
                raise ApiError(
                    403,
                    f"Host {host!r}: this server has no API key and answers only requests to "
                    f"{', '.join(sorted(self._hosts))}",
                    kind="permission_error",
                    code="host_not_allowed",
                )
        if self._key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest: how long the comparison takes says nothing about the key
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._key):
            raise ApiError(
                401,
                "invalid or missing API key (send `Authorization: Bearer <key>`)",
                kind="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def read_body(self, request: Request) -> Any:
        limit = self.limits.max_body_bytes
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            await _drain(request, 16 * limit)
            raise ApiError(
                415,
                f"Content-Type {kind or 'missing'!r}: send the body as application/json",
                code="unsupported_media_type",
            )
        declared = request.headers.get("content-length", "")
        too_big = ApiError(
            413,
            f"request body larger than the server's limit of {limit} bytes",
            code="request_too_large",
        )
        if declared.isdigit() and int(declared) > limit:
            await _drain(request, 16 * limit)
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                await _drain(request, 16 * limit)
                raise too_big
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(
                400, f"the request body is not valid JSON: {exc}", code="invalid_json"
            ) from None
        except RecursionError:
            body = None  # deeper than the parser's stack: refused as too deep below
            depth = MAX_JSON_DEPTH + 1
        else:
            depth = json_depth(body, MAX_JSON_DEPTH + 1)
        if depth > MAX_JSON_DEPTH:
            raise ApiError(
                400,
                f"the request body is nested deeper than {MAX_JSON_DEPTH} levels",
                code="invalid_json",
            )
        where = unencodable(body, "the body")
        if where is not None:
            raise ApiError(
                400,
                f"{where}: holds a lone surrogate (a \\ud800-style escape that is not text)",
                code="invalid_json",
            )
        return body

    def _enter(self) -> None:
        if self.stats.running >= self.limits.max_concurrency:
            self.stats.rejected_busy += 1
            seconds = self.limits.retry_after_seconds
            raise ApiError(
                429,
                f"the server is running its limit of {self.limits.max_concurrency} searches; "
                f"retry after {seconds} s",
                kind="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": str(seconds)},
            )
        self.stats.running += 1

    def _leave(self, outcome: str | None) -> None:
        """Free the slot; ``outcome`` (completed, failed, cancelled) of a search that started."""
        self.stats.running -= 1
        if outcome is not None:
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)

    # endpoints ----------------------------------------------------------------------------

    def models_body(self) -> dict[str, Any]:
        data = []
        for model in self.catalog.models.values():
            recipe = model.recipe
            data.append(
                {
                    "id": model.name,
                    "object": "model",
                    "created": self.started_at,
                    "owned_by": "branchwise",
                    "branchwise": {
                        "strategy": recipe.strategy.name,
                        "engine": recipe.engine.kind,
                        "prompt": recipe.prompt.style,
                        "fingerprint": recipe.fingerprint(),
                    },
                }
            )
        return {"object": "list", "data": data}

    async def complete(self, request: Request, endpoint: Endpoint) -> Response:
        self.authorize(request)
        body = await self.read_body(request)
        parsed = parse_request(body, endpoint, self.limits)
        model = self.catalog.get(parsed.model)
        self._enter()
        trace_id = "bw-" + uuid.uuid4().hex
        outcome: str | None = None  # None: refused before its search started
        handed_over = False
        try:
            orchestrator = model.for_request(parsed, self.limits, trace_id)
            prompt = await self._render(model, orchestrator.recipe, parsed)
            if len(prompt.token_ids) > self.limits.max_prompt_tokens:
                field = "messages" if endpoint == "chat" else "prompt"
                raise ApiError(
                    400,
                    f"{field}: the prompt is {len(prompt.token_ids)} tokens, more than the "
                    f"server's limit of {self.limits.max_prompt_tokens}",
                    param=field,
                    code="prompt_too_long",
                )
            problem = Problem(id=_prompt_id(prompt), question=parsed.question)
            recipe = orchestrator.recipe
            reply = Reply.new(
                endpoint,
                trace_id,
                model.name,
                recipe.strategy.name,
                recipe.fingerprint(),
                recipe.budget.model_dump(exclude_none=True),
                reasoning=recipe.reasoning,
            )
            run = SearchRun(orchestrator, problem, prompt)
            self.stats.started += 1
            outcome = "failed"  # until it says otherwise
            headers = {TRACE_HEADER: trace_id}
            if parsed.stream:
                result_of: dict[str, str] = {}

                def on_close(disconnected: bool) -> None:
                    done = result_of.get("outcome")
                    self._leave(done or ("cancelled" if disconnected else "failed"))

                stream = EventStream(
                    self._events(run, reply, parsed, result_of), headers=headers, on_close=on_close
                )
                handed_over = True
                return stream
            outcome, response = await self._answer(request, run, reply, headers)
            return response
        finally:
            if not handed_over:
                self._leave(outcome)

    async def _render(
        self, model: ServedModel, recipe: Recipe, parsed: SearchRequest
    ) -> RenderedPrompt:
        try:
            return await render_conversation(
                recipe.prompt, parsed.conversation, model.orchestrator.engine, recipe.base_dir
            )
        except Exception as exc:
            # a chat template that refuses the conversation (roles out of order, say); engines
            # report template failures as EngineError, a template may raise its own errors
            if not isinstance(exc, (EngineError, ValueError, TypeError)) and not type(
                exc
            ).__module__.startswith("jinja2"):
                raise
            raise ApiError(
                400,
                f"messages: cannot render the prompt: {type(exc).__name__}: {exc}",
                param="messages",
                code="invalid_field",
            ) from None

    async def _answer(
        self, request: Request, run: SearchRun, reply: Reply, headers: dict[str, str]
    ) -> tuple[str, Response]:
        gone = asyncio.create_task(client_gone(request.receive))
        try:
            done, _ = await asyncio.wait({run.task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            await run.cancel()  # a no-op when the search has finished
        if run.task not in done:
            log.info(
                "trace=%s model=%s cancelled: the client disconnected", reply.trace_id, reply.model
            )
            return "cancelled", Response(status_code=499)
        result = run.task.result()
        failure = failure_of(result)
        if failure is not None:
            log.warning("trace=%s model=%s search failed: %s", reply.trace_id, reply.model, failure)
            raise ApiError(
                500,
                f"the search failed: {failure} (trace {reply.trace_id})",
                kind="server_error",
                code="search_failed",
                headers=headers,
            )
        _log_result(reply, result)
        return "completed", JSONResponse(reply.body(result), headers=headers)

    async def _events(
        self, run: SearchRun, reply: Reply, parsed: SearchRequest, result_of: dict[str, str]
    ) -> AsyncIterator[bytes]:
        try:
            yield sse(reply.chunk(role=True))
            async for best in run.updates(self.limits.progress_interval):
                yield sse(reply.progress(best))
            result = await run.task
            failure = failure_of(result)
            if failure is not None:
                result_of["outcome"] = "failed"
                log.warning("trace=%s search failed: %s", reply.trace_id, failure)
                message = f"the search failed: {failure} (trace {reply.trace_id})"
                yield sse(error_body(message, kind="server_error", code="search_failed"))
                return
            for chunk in reply.final_chunks(result, parsed.include_usage):
                yield sse(chunk)
            yield sse("[DONE]")
            result_of["outcome"] = "completed"
            _log_result(reply, result)
        finally:
            await run.cancel()


def create_app(server: StrategyServer) -> FastAPI:
    """The ASGI app over ``server`` (whose catalog the caller starts and stops)."""
    app = FastAPI(
        title="Branchwise strategy server", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.branchwise = server

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(
            error_body(message, kind=kind, code=str(exc.status_code)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        message = f"internal error: {type(exc).__name__}"
        return JSONResponse(error_body(message, kind="server_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **server.stats.as_dict()}

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        server.authorize(request)
        return JSONResponse(server.models_body())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await server.complete(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await server.complete(request, "completions")

    return app


def json_depth(value: Any, stop: int) -> int:
    """How deeply ``value`` nests lists and objects, counted without recursion up to ``stop``."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest >= stop:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


async def _drain(request: Request, most: int) -> None:
    """Read and drop the rest of a refused body (up to ``most`` bytes), so the client, still
    writing it, reads our 413 instead of a reset connection."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > most:
                return
    except Exception:  # the body was already read, or the client is gone
        return


def _prompt_id(prompt: RenderedPrompt) -> str:
    """A problem id from the prompt's content: the same request gives the same per-node seeds."""
    return "q-" + hashlib.blake2b(repr(prompt.token_ids).encode(), digest_size=6).hexdigest()


def _log_result(reply: Reply, result: ProblemResult) -> None:
    usage = result.usage
    for warning in result.warnings:
        log.warning("trace=%s model=%s %s", reply.trace_id, reply.model, warning.message)
    log.info(
        "trace=%s model=%s generated=%s prompt=%s cached=%s seconds=%.2f",
        reply.trace_id,
        reply.model,
        usage.get("generated_tokens"),
        usage.get("prompt_tokens"),
        usage.get("cached_prompt_tokens"),
        float(usage.get("seconds", 0.0)),
    )

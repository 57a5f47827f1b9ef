"""In-process vLLM (``AsyncLLM``): the only module that imports vllm for generation.

vLLM's Python API moves between releases; everything version-specific stays in this file and
is translated into :mod:`orchestrator.engines.types` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from branchwise.core.cpu_layout import laid_out
from branchwise.core.errors import EngineError
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
    LogprobRequest,
    LogprobResult,
    SamplingSpec,
)
from branchwise.orchestrator.engines.watchdog import start_watchdog, stop_watchdog
from branchwise.orchestrator.prompting import ChatMessage, RenderedPrompt

if TYPE_CHECKING:
    from branchwise.orchestrator.engines.config import VLLMEngineConfig


class VLLMEngine:
    """Drives one in-process ``AsyncLLM``; prompts are exact token ids, prefix caching on."""

    name = "vllm"
    samples_from_codes = True
    """Arithmetic sampling: a logits processor decodes each code point (vllm_code_book)."""

    @classmethod
    def from_config(cls, config: VLLMEngineConfig, base_dir: Path | None = None) -> VLLMEngine:
        return cls(config, base_dir)

    def __init__(self, config: VLLMEngineConfig, base_dir: Path | None = None) -> None:
        self.config = config
        self.model_path = config.resolved_model(base_dir)
        self._llm: Any = None
        self._tokenizer: Any = None
        self._inflight: set[str] = set()
        self._stop_tokens = StopTokenCache()
        self._watchdog: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._llm is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        from branchwise.orchestrator.engines.vllm_code_book import ArithmeticCodeProcessor

        c = self.config
        # Every request we send is seeded. On CPU, vLLM rewinds a seeded request's generator
        # when it drops a token sampled during a partial (chunked) prefill, which CPU
        # generators cannot do ("CPU Generator does not use offset"): the engine core dies.
        # Whole prefills never drop a token, so on CPU prefill is not chunked.
        chunked_prefill = False if current_platform.is_cpu() else None
        args = AsyncEngineArgs(
            model=self.model_path,
            tokenizer=self.model_path,
            dtype=c.dtype,  # type: ignore[arg-type]  # validated by vLLM itself
            max_model_len=c.max_model_len,  # type: ignore[arg-type]  # None = model's own
            gpu_memory_utilization=c.gpu_memory_utilization,
            enforce_eager=c.enforce_eager,
            enable_prefix_caching=True,
            enable_chunked_prefill=chunked_prefill,
            max_num_seqs=c.max_num_seqs,
            seed=c.seed,
            tensor_parallel_size=c.tensor_parallel_size,
            disable_log_stats=True,
            block_size=c.block_size,
            # acts only on requests carrying a code point (arithmetic sampling); with a custom
            # processor vLLM keeps each request's output ids current before sampling, which on
            # a GPU with async scheduling costs a sync per step (none on CPU)
            logits_processors=[ArithmeticCodeProcessor],
        )
        # engine-core processes must not outlive this one, even if it is SIGKILLed
        self._watchdog = start_watchdog()
        try:
            with laid_out(c.cpu_layout):
                self._llm = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            stop_watchdog(self._watchdog)
            raise EngineError(f"vLLM failed to start on {self.model_path}: {exc}") from exc
        self._tokenizer = self._llm.get_tokenizer()

    async def close(self) -> None:
        """Abort every in-flight request, then shut the engine down."""
        if self._llm is None:
            return
        if self._inflight:
            await self._llm.abort(list(self._inflight))
        self._llm.shutdown()
        self._llm = None
        stop_watchdog(self._watchdog)
        self._watchdog = None

    @property
    def llm(self) -> Any:
        if self._llm is None:
            raise EngineError("VLLMEngine used before start(); use `async with VLLMEngine(...)`")
        return self._llm

    def running_requests(self) -> int:
        """Requests vLLM itself still holds (queued or running): 0 once every search is over."""
        return int(self.llm.get_num_unfinished_requests())

    async def tokenize(self, text: str) -> tuple[int, ...]:
        self.llm  # noqa: B018 - raise early if not started
        return tuple(int(t) for t in self._tokenizer.encode(text, add_special_tokens=True))

    async def tokenize_chat(
        self, messages: Sequence[ChatMessage], *, chat_template: str | None = None
    ) -> RenderedPrompt:
        """Render the model's chat template (or ``chat_template``) with the generation prompt."""
        self.llm  # noqa: B018 - raise early if not started
        try:
            text = self._tokenizer.apply_chat_template(
                [m.as_dict() for m in messages],
                tokenize=False,
                add_generation_prompt=True,
                chat_template=chat_template,
            )
        except (ValueError, TypeError) as exc:  # no template, or one that raises
            raise EngineError(f"chat template of {self.model_path} failed: {exc}") from None
        ids = self._tokenizer.encode(str(text), add_special_tokens=False)
        return RenderedPrompt(str(text), tuple(int(t) for t in ids))

    async def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids as vLLM writes outputs (special tokens skipped)."""
        self.llm  # noqa: B018 - raise early if not started
        return self._decode_output(token_ids)

    def _decode_output(self, token_ids: Sequence[int]) -> str:
        # A completion's text is the decode of all its tokens. vLLM cuts `text` at a stop
        # string even when the stop string ends inside the last token (".\n\n\n" for a
        # "\n\n" step delimiter), so its own text can be shorter than its token ids.
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-sequence token: a forced EOS ends a path (token-level branching)."""
        self.llm  # noqa: B018 - raise early if not started
        eos = self._tokenizer.eos_token_id
        return int(eos) if eos is not None else None

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.codes and request.n > 1:
            return await self._generate_coded(request)
        final: Any = None
        stops = await self.prepare_stop_tokens(request.sampling.stop)
        async with contextlib.aclosing(self._run(request, stream=False, stops=stops)) as outputs:
            async for output in outputs:
                final = output
        if final is None:
            raise EngineError(f"vLLM returned nothing for {request.request_id}")
        return _to_result(final, request.sampling, self._decode_output, stops=stops)

    async def _generate_coded(self, request: GenerationRequest) -> GenerationResult:
        """Arithmetic sampling with n > 1: one request per code point, run at once.

        vLLM hands each of a request's n samples the same extra_args, so a code point per
        sample needs a request per sample; they share the prompt's prefix cache. Cancelling
        this call cancels (aborts) every one of them.
        """
        if len(request.codes) != request.n:
            raise EngineError(
                f"request {request.request_id}: {len(request.codes)} code points for n={request.n}"
            )
        tasks = [
            asyncio.ensure_future(self.generate(_one_code(request, index)))
            for index in range(request.n)
        ]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:  # one failed or this call was cancelled: abort the others
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return GenerationResult(
            tuple(part.completions[0] for part in parts),
            prompt_tokens=parts[0].prompt_tokens,
            cached_prompt_tokens=min(part.cached_prompt_tokens for part in parts),
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        """Cumulative results as tokens arrive; leaving the loop early aborts the request."""
        if request.codes and request.n > 1:
            raise EngineError(
                f"request {request.request_id}: streams one sample per code point (n=1), "
                f"not n={request.n}"
            )
        # aclosing: leaving early must abort in the engine now, not when GC finalises _run
        # Chunks are cumulative; the stream converts each token's logprobs once and re-decodes
        # only the final chunk (in between, vLLM's own incremental text), or a long completion
        # costs time quadratic in its length (2,000 tokens with top-20 logprobs: ~15 s of CPU).
        seen: dict[int, _Converted] = {}
        stops = await self.prepare_stop_tokens(request.sampling.stop)
        async with contextlib.aclosing(self._run(request, stream=True, stops=stops)) as outputs:
            async for output in outputs:
                yield _to_result(output, request.sampling, self._decode_output, seen, stops)

    async def logprobs_of(self, request: LogprobRequest) -> LogprobResult:
        """Log-probabilities of given tokens (prompt log-probabilities; see vllm_scoring)."""
        from branchwise.orchestrator.engines.vllm_scoring import score_given_tokens

        return await score_given_tokens(self.llm, request, self._inflight)

    async def prepare_stop_tokens(self, stop: Sequence[str]) -> StopTokens:
        """``stop``'s stop tokens (found once; none when the config turns them off). Asked at
        start, the first request that stops does not wait."""
        if not self.config.stop_tokens:
            return NO_STOP_TOKENS
        self.llm  # noqa: B018 - raise early if not started
        return await self._stop_tokens.get(stop, self._tokenizer_now)

    async def _tokenizer_now(self) -> Any:
        return self._tokenizer

    async def _run(
        self, request: GenerationRequest, *, stream: bool, stops: StopTokens
    ) -> AsyncGenerator[Any, None]:
        from vllm.inputs import TokensPrompt

        params = to_sampling_params(request, stream=stream, stop_token_ids=stops.ids)
        prompt = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        rid = request.request_id
        self._inflight.add(rid)
        generator = self.llm.generate(prompt, params, request_id=rid)
        try:
            async for output in generator:
                yield output
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            raise EngineError(f"vLLM failed request {rid}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._inflight.discard(rid)
            await generator.aclose()  # aborts in the engine if it had not finished


def to_sampling_params(
    request: GenerationRequest, *, stream: bool, stop_token_ids: Sequence[int] = ()
) -> Any:
    """vLLM's sampling parameters for a request (``stop_token_ids``: see ``stop_tokens``)."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    s = request.sampling
    return SamplingParams(
        n=request.n,
        max_tokens=s.max_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        min_p=s.min_p,
        seed=s.seed,
        stop=list(s.stop) or None,
        stop_token_ids=list(stop_token_ids) or None,
        include_stop_str_in_output=True,
        logprobs=s.logprobs,
        output_kind=RequestOutputKind.CUMULATIVE if stream else RequestOutputKind.FINAL_ONLY,
        extra_args=_code_args(request),
    )


def _one_code(request: GenerationRequest, index: int) -> GenerationRequest:
    """Sample ``index`` of an arithmetic-sampling request as a request of its own."""
    seed = request.sampling.seed
    return replace(
        request,
        request_id=f"{request.request_id}#{index}",
        n=1,
        codes=(request.codes[index],),
        sampling=request.sampling.model_copy(
            update={"seed": None if seed is None else seed + index}
        ),
    )


def _code_args(request: GenerationRequest) -> dict[str, Any] | None:
    """The request's code point for the arithmetic-sampling logits processor (n=1 only)."""
    if not request.codes:
        return None
    from branchwise.orchestrator.engines.vllm_code_book import CODE_KEY

    if request.n != 1 or len(request.codes) != 1:
        raise EngineError(f"request {request.request_id}: one code point per vLLM request")
    return {CODE_KEY: float(request.codes[0])}


class _Converted:
    """A streamed completion's logprobs converted so far (cumulative chunks only grow)."""

    def __init__(self) -> None:
        self.chosen: list[float] = []
        self.tops: list[tuple[float, ...]] = []
        self.top_ids: list[tuple[int, ...]] = []

    def extend(self, positions: Sequence[Any], token_ids: tuple[int, ...], k: int) -> None:
        done = len(self.chosen)
        chosen, tops, top_ids = _read_logprobs(positions[done:], token_ids[done:], k)
        self.chosen += chosen
        self.tops += tops
        self.top_ids += top_ids


def _to_result(
    output: Any,
    sampling: SamplingSpec,
    decode: Callable[[Sequence[int]], str],
    seen: dict[int, _Converted] | None = None,
    stops: StopTokens = NO_STOP_TOKENS,
) -> GenerationResult:
    """One engine output as a result; ``seen`` carries a stream's work from chunk to chunk."""
    prompt_tokens = len(output.prompt_token_ids or ())
    cached = int(output.num_cached_tokens or 0)
    completions = tuple(
        _to_completion(
            c,
            sampling,
            prompt_tokens,
            cached,
            decode,
            None if seen is None else seen.setdefault(c.index, _Converted()),
            stops,
        )
        for c in sorted(output.outputs, key=lambda c: c.index)
    )
    return GenerationResult(completions, prompt_tokens=prompt_tokens, cached_prompt_tokens=cached)


def _to_completion(
    c: Any,
    sampling: SamplingSpec,
    prompt_tokens: int,
    cached: int,
    decode: Callable[[Sequence[int]], str],
    converted: _Converted | None = None,
    stops: StopTokens = NO_STOP_TOKENS,
) -> Completion:
    token_ids = tuple(int(t) for t in c.token_ids)
    chosen: tuple[float, ...] = ()
    tops: tuple[tuple[float, ...], ...] = ()
    top_ids: tuple[tuple[int, ...], ...] = ()
    if sampling.logprobs is not None and c.logprobs is not None:
        if converted is None:
            chosen, tops, top_ids = _read_logprobs(c.logprobs, token_ids, sampling.logprobs)
        else:
            converted.extend(c.logprobs, token_ids, sampling.logprobs)
            chosen, tops = tuple(converted.chosen), tuple(converted.tops)
            top_ids = tuple(converted.top_ids)
    reason: FinishReason = c.finish_reason if c.finish_reason in ("stop", "length") else "abort"
    if c.finish_reason is None:
        reason = "abort"
    # A finished completion's text is the decode of its tokens (see _decode_output); a chunk
    # still streaming keeps vLLM's incremental text, which is that decode up to any trailing
    # incomplete character.
    streaming = converted is not None and c.finish_reason is None
    return Completion(
        token_ids=token_ids,
        text=str(c.text) if streaming else decode(token_ids),
        finish_reason=reason,
        stop_reason=stops.reason(c.stop_reason, str(c.text)),
        token_logprobs=chosen,
        top_logprobs=tops,
        top_token_ids=top_ids,
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached,
    )


def _read_logprobs(
    positions: Sequence[Any], token_ids: tuple[int, ...], k: int
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[tuple[int, ...], ...]]:
    chosen: list[float] = []
    tops: list[tuple[float, ...]] = []
    top_ids: list[tuple[int, ...]] = []
    for token_id, position in zip(token_ids, positions, strict=False):
        if position is None:
            chosen.append(0.0)
            tops.append(())
            top_ids.append(())
            continue
        picked = position.get(token_id)
        chosen.append(float(picked.logprob) if picked is not None else float("-inf"))
        ranked = sorted(
            (item for item in position.items() if item[1].rank is not None and item[1].rank <= k),
            key=lambda item: item[1].rank,
        )
        tops.append(tuple(float(lp.logprob) for _, lp in ranked))
        top_ids.append(tuple(int(tid) for tid, _ in ranked))
    return tuple(chosen), tuple(tops), tuple(top_ids)

"""A deterministic engine for unit tests: same protocol and accounting as the real ones.

It tokenizes by character, simulates prefix caching in 16-token blocks and, when asked,
decode latency, so cancellation and concurrency behave like a real engine. What it writes
comes from a :class:`ScriptedPolicy` (``scripted_policy``, re-exported here); the default
replays reference solutions with a set per-step error rate, which gives search something
real to find.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from branchwise.core.errors import EngineError
from branchwise.core.seeding import derive_seed
from branchwise.orchestrator.engines.code_book import CodeDraws
from branchwise.orchestrator.engines.scripted_policy import (
    EOS,
    Continuation,
    DrawingPolicy,
    NextTokenPolicy,
    ReferencePolicy,
    ScriptedPolicy,
    TokenSampling,
    read_solutions,
)
from branchwise.orchestrator.engines.scripted_thinking import ThinkingPolicy
from branchwise.orchestrator.engines.types import (
    Completion,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    LogprobRequest,
    LogprobResult,
)

if TYPE_CHECKING:
    from branchwise.orchestrator.engines.config import ScriptedEngineConfig

from branchwise.orchestrator.prompting import (
    CHATML_TEMPLATE,
    ChatMessage,
    RenderedPrompt,
    render_chat_template,
)

__all__ = [
    "EOS",
    "Continuation",
    "DrawingPolicy",
    "NextTokenPolicy",
    "ReferencePolicy",
    "ScriptedEngine",
    "ScriptedPolicy",
    "TokenSampling",
    "read_solutions",
]

_OFFSET = 3
_BLOCK = 16


def _alternative_ids(token: int, count: int) -> tuple[int, ...]:
    """Synthetic top-k token ids: the sampled token first, then nearby characters.

    Digits get other digits as alternatives (so a fork changes a number), anything else the
    next printable characters.
    """
    ch = chr(token - _OFFSET)
    if ch.isdigit():
        alts = [str((int(ch) + r) % 10) for r in range(1, count)]
    else:
        alts = [chr(32 + (ord(ch) - 32 + r) % 95) for r in range(1, count)]
    return (token, *(ord(a) + _OFFSET for a in alts))[:count]


class ScriptedEngine:
    """Character-level, deterministic engine driven by a policy."""

    name = "scripted"
    samples_from_codes = True
    """Arithmetic sampling: a request's code points make its policy's choices."""

    @classmethod
    def from_config(
        cls, config: ScriptedEngineConfig, base_dir: Path | None = None
    ) -> ScriptedEngine:
        """The engine of a recipe's config; ``solutions`` is read relative to ``base_dir``."""
        solutions = {}
        if config.solutions is not None:
            path = Path(config.solutions)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            solutions = read_solutions(path)
        engine = cls(
            error_rate=config.error_rate,
            seconds_per_token=config.seconds_per_token,
            solutions=solutions,
        )
        if config.thinking is not None:
            engine.think(lines=config.thinking.lines, decay=config.thinking.decay)
        return engine

    def __init__(
        self,
        policy: ScriptedPolicy | None = None,
        *,
        error_rate: float = 0.3,
        seconds_per_token: float = 0.0,
        fail_after: int | None = None,
        solutions: Mapping[str, str] | None = None,
    ) -> None:
        """``solutions``: reference solutions by question, for the default policy."""
        self.policy: ScriptedPolicy = policy or ReferencePolicy(solutions or {}, error_rate)
        self.seconds_per_token = seconds_per_token
        self.fail_after = fail_after
        self.requests: list[GenerationRequest] = []
        self.aborted: list[str] = []
        self.generated_tokens = 0
        self.in_flight: dict[str, GenerationRequest] = {}
        """Requests generating or streaming now, by id: none once every search is over."""
        self.requests_scored: list[LogprobRequest] = []
        """Scoring requests (``logprobs_of``) in the order they came."""
        self._cached_blocks: set[int] = set()

    eos_token_id: int | None = None
    """Character-level ids hold no end-of-sequence token: a sample ends by its finish reason."""

    @property
    def running(self) -> int:
        """How many requests are in flight now."""
        return len(self.in_flight)

    def think(self, *, lines: tuple[int, int] = (1, 6), decay: float = 0.7) -> None:
        """Make the default policy a reasoning model: ``<think>`` lines, then the answer."""
        if isinstance(self.policy, ReferencePolicy):
            self.policy = ThinkingPolicy(self.policy, lines=lines, decay=decay)

    def learn(self, solutions: Mapping[str, str]) -> None:
        """Add reference solutions (by question) to the default policy.

        A hook for tests and fixtures, called by whoever sets the engine up: the runner never
        hands an engine the problems' solutions.
        """
        policy = self.policy.inner if isinstance(self.policy, ThinkingPolicy) else self.policy
        if isinstance(policy, ReferencePolicy):
            policy.solutions.update(solutions)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def tokenize(self, text: str) -> tuple[int, ...]:
        return tuple(ord(ch) + _OFFSET for ch in text)

    async def tokenize_chat(
        self, messages: Sequence[ChatMessage], *, chat_template: str | None = None
    ) -> RenderedPrompt:
        """ChatML (or ``chat_template``), one token per character like every scripted prompt."""
        text = render_chat_template(chat_template or CHATML_TEMPLATE, messages)
        return RenderedPrompt(text, await self.tokenize(text))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t - _OFFSET) for t in token_ids if t >= _OFFSET)

    async def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids (the async form engines share)."""
        return self.detokenize(token_ids)

    def _sample_all(self, request: GenerationRequest) -> tuple[list[Completion], int]:
        self.requests.append(request)
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            raise EngineError(f"scripted engine died at request {request.request_id}")
        prompt = self.detokenize(request.prompt_token_ids)
        cached = self._cache_lookup(request.prompt_token_ids)
        if request.codes:
            return self._decode_codes(prompt, request), cached
        completions = []
        for index in range(request.n):
            seed = derive_seed(request.sampling.seed, request.request_id, index)
            if request.sampling.seed is not None:
                seed = derive_seed(request.sampling.seed, index)
            rng = random.Random(seed)
            cont = self._continue(prompt, rng, request.sampling.temperature,
                                  request.sampling.max_tokens)  # fmt: skip
            completions.append(self._complete(cont, request))
        return completions, cached

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        completions, cached = self._sample_all(request)
        longest = max((len(c.token_ids) for c in completions), default=0)
        self.in_flight[request.request_id] = request
        try:
            if self.seconds_per_token:
                await asyncio.sleep(self.seconds_per_token * longest)
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.aborted.append(request.request_id)
            raise
        finally:
            self.in_flight.pop(request.request_id, None)
        self.generated_tokens += sum(len(c.token_ids) for c in completions)
        return GenerationResult(
            tuple(completions),
            prompt_tokens=len(request.prompt_token_ids),
            cached_prompt_tokens=cached,
        )

    def _decode_codes(self, prompt: str, request: GenerationRequest) -> list[Completion]:
        """Arithmetic sampling: completion ``i`` makes every choice from code point ``i``."""
        policy = self.policy
        if len(request.codes) != request.n:
            raise EngineError(
                f"request {request.request_id}: {len(request.codes)} code points for n={request.n}"
            )
        if not isinstance(policy, DrawingPolicy):
            raise EngineError(
                f"scripted engine: policy {type(policy).__name__} cannot decode from code points "
                "(arithmetic sampling needs one with continue_drawn)"
            )
        return [
            self._complete(policy.continue_drawn(prompt, CodeDraws(code)), request)
            for code in request.codes
        ]

    def _complete(self, cont: Continuation, request: GenerationRequest) -> Completion:
        """One completion: what the policy wrote, cut as ``request`` says."""
        spec = request.sampling
        text, logprobs = cont.text, list(cont.logprobs)
        finish: FinishReason = "length"
        stop_reason: str | None = None
        cut = len(text)
        eos_at = text.find(EOS)
        if eos_at >= 0:
            cut, finish = eos_at, "stop"
        for stop in spec.stop:
            at = text.find(stop, 0, cut)
            if at >= 0 and at + len(stop) <= cut:
                end = at + len(stop)
                if end <= cut:
                    cut, finish, stop_reason = end, "stop", stop
        if cut > spec.max_tokens:
            cut, finish, stop_reason = spec.max_tokens, "length", None
        kept = text[:cut]
        token_ids = tuple(ord(ch) + _OFFSET for ch in text[:cut])
        chosen = tuple(logprobs[:cut]) if spec.logprobs is not None else ()
        tops: tuple[tuple[float, ...], ...] = ()
        top_ids: tuple[tuple[int, ...], ...] = ()
        if spec.logprobs:
            k = spec.logprobs
            if cont.top_logprobs:
                tops = tuple(tuple(top[:k]) for top in cont.top_logprobs[:cut])
            else:
                tops = tuple(tuple(max(lp, -0.7) - 1.5 * r for r in range(k)) for lp in chosen)
            top_ids = tuple(
                _alternative_ids(token, len(top))
                for token, top in zip(token_ids, tops, strict=True)
            )
            if cont.top_chars:
                top_ids = tuple(
                    tuple(ord(ch) + _OFFSET for ch in chars[:k]) for chars in cont.top_chars[:cut]
                )
        return Completion(
            token_ids=token_ids,
            text=kept,
            finish_reason=finish,
            stop_reason=stop_reason,
            token_logprobs=chosen,
            top_logprobs=tops,
            top_token_ids=top_ids,
            prompt_tokens=len(request.prompt_token_ids),
        )

    def _continue(
        self, prompt: str, rng: random.Random, temperature: float, max_tokens: int
    ) -> Continuation:
        if isinstance(self.policy, TokenSampling):  # token by token, at the temperature asked
            return self.policy.sample_at(prompt, rng, temperature, max_tokens + 1)
        return self.policy.continue_text(prompt, rng)

    async def logprobs_of(self, request: LogprobRequest) -> LogprobResult:
        """Exact log-probabilities of the given characters under the policy's token-level
        distribution (the default replay's, which from a line boundary is the one it samples)."""
        policy = self.policy
        if not isinstance(policy, NextTokenPolicy):
            raise EngineError(
                f"scripted policy {type(policy).__name__} has no token-level distribution, "
                "so it cannot score given tokens"
            )
        self.requests_scored.append(request)
        text = self.detokenize(request.prompt_token_ids)
        scored: list[float] = []
        for token in request.token_ids:
            scored.append(policy.next_token_logprobs(text).get(chr(token - _OFFSET), -math.inf))
            text += chr(token - _OFFSET)
        await asyncio.sleep(0)
        length = len(request.prompt_token_ids) + len(request.token_ids)
        return LogprobResult(tuple(scored), prompt_tokens=length)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        """Cumulative results one token step at a time, as :meth:`VLLMEngine.stream` yields.

        Each step takes ``seconds_per_token``, so aborting mid-stream happens at a real
        point in time. A token counts as generated when it is yielded; closing the iterator
        (or cancelling its consumer) before the end records the request in :attr:`aborted`.
        Partial completions report ``finish_reason="abort"`` until their last token, as
        vLLM's unfinished outputs do.
        """
        completions, cached = self._sample_all(request)
        longest = max((len(c.token_ids) for c in completions), default=0)
        prompt_tokens = len(request.prompt_token_ids)
        finished = False
        self.in_flight[request.request_id] = request
        try:
            for step in range(1, longest + 1):
                await asyncio.sleep(self.seconds_per_token)
                self.generated_tokens += sum(1 for c in completions if len(c.token_ids) >= step)
                finished = step == longest
                partial = tuple(self._prefix(c, step) for c in completions)
                yield GenerationResult(
                    partial, prompt_tokens=prompt_tokens, cached_prompt_tokens=cached
                )
            if longest == 0:
                finished = True
                yield GenerationResult(
                    tuple(completions), prompt_tokens=prompt_tokens, cached_prompt_tokens=cached
                )
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:
                self.aborted.append(request.request_id)
            raise
        finally:
            self.in_flight.pop(request.request_id, None)

    def _prefix(self, completion: Completion, step: int) -> Completion:
        if len(completion.token_ids) <= step:
            return completion
        ids = completion.token_ids[:step]
        return replace(
            completion,
            token_ids=ids,
            text=self.detokenize(ids),
            finish_reason="abort",
            stop_reason=None,
            token_logprobs=completion.token_logprobs[:step],
            top_logprobs=completion.top_logprobs[:step],
            top_token_ids=completion.top_token_ids[:step],
        )

    def _cache_lookup(self, ids: tuple[int, ...]) -> int:
        """Prompt tokens found cached, block by block as vLLM counts them.

        A block is known by a hash chained over the blocks before it (as vLLM's prefix cache
        keys them), not by the whole prefix, so memory grows linearly with prompt length.
        """
        hits = 0
        key = 0
        for end in range(_BLOCK, len(ids) + 1, _BLOCK):
            key = hash((key, ids[end - _BLOCK : end]))
            if key in self._cached_blocks:
                hits = end
            else:
                self._cached_blocks.add(key)
        return hits

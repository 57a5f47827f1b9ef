"""The engine protocol: the only way the orchestrator reaches a language model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from branchwise.orchestrator.engines.stop_tokens import StopTokens
from branchwise.orchestrator.engines.types import (
    GenerationRequest,
    GenerationResult,
    LogprobRequest,
    LogprobResult,
)
from branchwise.orchestrator.prompting import ChatMessage, RenderedPrompt


@runtime_checkable
class Engine(Protocol):
    """An async text generator that works on exact token ids.

    Cancelling the task awaiting :meth:`generate` must abort the request inside the engine,
    so a pruned branch stops costing tokens at once.
    """

    name: str

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Sample ``request.n`` continuations of the prompt tokens."""
        ...

    async def tokenize(self, text: str) -> tuple[int, ...]:
        """Token ids of a prompt text, exactly as the engine would encode it."""
        ...

    async def tokenize_chat(
        self, messages: Sequence[ChatMessage], *, chat_template: str | None = None
    ) -> RenderedPrompt:
        """The model's chat template (or ``chat_template``) with the generation prompt."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class StreamingEngine(Engine, Protocol):
    """An engine that can also stream partial results (for token-level branching)."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        """Yield cumulative results as tokens arrive; closing the iterator aborts the request."""
        ...


@runtime_checkable
class TokenEngine(Engine, Protocol):
    """An engine that works at the level of single tokens (``ctx.extend``).

    Token-level branching forces chosen tokens onto a path: it needs their text, decoded in
    the context of the path, and to know when a forced token ends the sequence. Engine
    configs whose engines are TokenEngines say so with ``EngineConfig.token_level``, so a
    recipe whose strategy needs one is refused when it is validated, not mid-run.
    """

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-sequence token; None when the engine's token ids never hold one."""
        ...

    async def decode(self, token_ids: Sequence[int]) -> str:
        """The text of token ids, as the engine writes its outputs."""
        ...


@runtime_checkable
class LogprobEngine(Engine, Protocol):
    """An engine that gives the log-probabilities of given tokens (``port.logprobs_of``).

    Samplers that weigh whole continuations (Metropolis-Hastings towards p^alpha, exact
    verification of drafted tokens) need p(token | prefix) of tokens they did not sample.
    Engine configs whose engines have it say so with ``EngineConfig.given_logprobs``, so a
    recipe whose strategy needs it is refused when it is validated.
    """

    async def logprobs_of(self, request: LogprobRequest) -> LogprobResult:
        """log p of each of ``request.token_ids`` after the prompt and the tokens before it."""
        ...


@runtime_checkable
class CodeBookEngine(Engine, Protocol):
    """An engine that decodes each completion from a code point (arithmetic sampling).

    Given ``GenerationRequest.codes``, completion ``i`` takes at each step the token whose
    interval of the model's arithmetic code book (tokens in a fixed order, probabilities
    under the request's temperature and top-p) holds code ``i``, then rescales the code into
    that interval. Engine configs say so with ``EngineConfig.arithmetic_sampling``.
    """

    samples_from_codes: bool
    """True: ``GenerationRequest.codes`` decide the completions."""


@runtime_checkable
class StopTokenEngine(Engine, Protocol):
    """An engine that also stops on the tokens holding a stop string (``stop_tokens.py``)."""

    async def prepare_stop_tokens(self, stop: Sequence[str]) -> StopTokens:
        """``stop``'s stop tokens, found now (at start), not in the first request that stops."""
        ...

"""Engine-neutral request and result types.

Every engine translates its own outputs into these frozen types, so strategies, scorers and
tests never see a vLLM or HTTP object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FinishReason = Literal["stop", "length", "abort", "error"]
SamplingMethod = Literal["ancestral", "arithmetic"]


class SamplingSpec(BaseModel):
    """How to sample one generation request; maps onto vLLM's SamplingParams."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(128, ge=1, description="Most new tokens per completion.")
    temperature: float = Field(1.0, ge=0.0, description="Softmax temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Sample among the k likeliest tokens; 0 disables.")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Drop tokens below min_p * p(top).")
    seed: int | None = Field(None, description="Per-request sampling seed.")
    stop: tuple[str, ...] = Field(
        (),
        description="Stop strings (e.g. the step delimiter). Generation ends with the token "
        "that completes one; that whole token is kept (see Completion.text).",
    )
    logprobs: int | None = Field(
        None, ge=0, le=20, description="Top-k logprobs per generated token; None for none."
    )
    method: SamplingMethod = Field(
        "ancestral",
        description="ancestral: each sample draws its own random numbers; arithmetic: the "
        "samples of a node are read off the model's arithmetic code book at evenly spread "
        "code points (Vilnis et al. 2023), so they cannot collapse onto one another; needs an "
        "engine that decodes from code points (vllm, scripted).",
    )


@dataclass(frozen=True)
class GenerationRequest:
    """One call to an engine: n samples continuing one prompt."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingSpec
    n: int = 1
    affinity: str | None = None
    """Requests with the same affinity key go to the same server (prefix-cache locality)."""
    codes: tuple[float, ...] = ()
    """Arithmetic sampling: one code point in [0, 1) per completion (``n`` of them), which
    decides it through the model's code book; empty for ancestral sampling."""


@dataclass(frozen=True)
class Completion:
    """One sampled continuation, in the engine-neutral form."""

    token_ids: tuple[int, ...]
    text: str
    """Always the decode of ``token_ids`` (special tokens skipped), even when a stop string
    ended inside the last token: a node's text and its token ids never disagree."""
    finish_reason: FinishReason
    stop_reason: str | int | None = None
    """The stop string (or stop token) that ended generation; None for EOS or length."""
    token_logprobs: tuple[float, ...] = ()
    """Log-probability of each sampled token (empty when logprobs were not asked)."""
    top_logprobs: tuple[tuple[float, ...], ...] = ()
    """Per position, the top-k log-probabilities (for entropy and confidence)."""
    top_token_ids: tuple[tuple[int, ...], ...] = ()
    """Per position, the token ids of ``top_logprobs`` in the same order (empty when the
    engine cannot name them); token-level branching forks on these."""
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0

    @property
    def ended_by_stop_string(self) -> bool:
        """True when a stop string (e.g. the step delimiter) ended this completion."""
        return self.finish_reason == "stop" and isinstance(self.stop_reason, str)


@dataclass(frozen=True)
class GenerationResult:
    """All completions of one request plus the prompt accounting the engine reports."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    cached_prompt_tokens: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class LogprobRequest:
    """Score given tokens: their log-probabilities after a prompt (nothing is sampled)."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    """The forced continuation whose tokens are scored, one log-probability each."""
    affinity: str | None = None


@dataclass(frozen=True)
class LogprobResult:
    """Log-probabilities (temperature 1, no top-k/top-p) of a request's ``token_ids``."""

    token_logprobs: tuple[float, ...]
    prompt_tokens: int
    """Tokens the engine read: the prompt and the scored continuation."""
    cached_prompt_tokens: int = 0

"""Engine configs: one pydantic model per engine kind, registered by ``kind``.

Each config names its engine class by import path (``engine_class``); the engine module is
imported only when one is built, so a recipe for a remote fleet never imports vllm, and this
module imports no engine (the engines import their configs, never the other way round).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from branchwise.core.cpu_layout import CpuLayout
from branchwise.core.registry import Registry

if TYPE_CHECKING:
    from branchwise.orchestrator.engines.base import Engine


class EngineConfig(BaseModel):
    """Base of every engine config; ``kind`` selects the engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="Engine kind: vllm, openai or scripted.")
    # Fields that change how fast or where, not what is generated (see orchestrator.fingerprint).
    plumbing: ClassVar[frozenset[str]] = frozenset()
    # True when the engine it builds is a TokenEngine (decode, eos_token_id): strategies that
    # force tokens onto a path (``Strategy.needs_token_engine``) need one.
    token_level: ClassVar[bool] = False
    # True when the engine it builds is a LogprobEngine (log-probabilities of given tokens):
    # strategies that weigh continuations they did not sample (``needs_given_logprobs``).
    given_logprobs: ClassVar[bool] = False
    # True when the engine decodes each completion from a code point of the request
    # (``GenerationRequest.codes``): ``sampling.method: arithmetic`` needs one.
    arithmetic_sampling: ClassVar[bool] = False

    # "module:Class" of the engine; the class has ``from_config(config, base_dir)``.
    engine_class: ClassVar[str] = ""

    def build(self, base_dir: Path | None = None) -> Engine:
        """The engine this config describes (paths relative to ``base_dir``)."""
        module, _, name = self.engine_class.partition(":")
        engine: Engine = getattr(importlib.import_module(module), name).from_config(self, base_dir)
        return engine


class VLLMBackedConfig(EngineConfig):
    """What the engines that drive vLLM (in process or over HTTP) share."""

    stop_tokens: bool = Field(
        True,
        description="Also stop on the tokens whose text holds a stop string "
        "(orchestrator/engines/stop_tokens.py; over HTTP it needs the tokenizer here): same "
        "completions, and vLLM's engine stops on them in its own step instead of generating "
        "on until its front end finds the stop string and aborts.",
    )


class VLLMEngineConfig(VLLMBackedConfig):
    """In-process vLLM. Memory utilisation on CPU is the share of RAM for the KV cache."""

    kind: Literal["vllm"] = "vllm"
    engine_class: ClassVar[str] = "branchwise.orchestrator.engines.vllm_engine:VLLMEngine"
    token_level: ClassVar[bool] = True
    given_logprobs: ClassVar[bool] = True
    arithmetic_sampling: ClassVar[bool] = True
    plumbing: ClassVar[frozenset[str]] = frozenset(
        {
            "gpu_memory_utilization",
            "max_num_seqs",
            "block_size",
            "enforce_eager",
            "cpu_layout",
            "stop_tokens",
        }
    )
    model: str = Field(description="Model folder (relative to the recipe) or name.")
    dtype: str = Field("auto", description="Weights dtype, e.g. float32 on CPU.")
    max_model_len: int | None = Field(None, ge=16, description="Context length cap.")
    gpu_memory_utilization: float = Field(
        0.25, gt=0, le=1, description="Share of device memory (RAM on CPU) for the KV cache."
    )
    enforce_eager: bool = Field(True, description="Skip graph compilation (fast start).")
    max_num_seqs: int = Field(256, ge=1, description="Most sequences batched at once.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model.")
    seed: int = Field(0, description="Engine seed (per-request seeds come from the recipe).")
    block_size: int | None = Field(
        None,
        ge=1,
        description="KV-cache block size in tokens; prefix caching reuses whole blocks only. "
        "None: vLLM's default (128 on CPU, coarser than short prompts; the CPU backend needs a "
        "multiple of 32).",
    )
    cpu_layout: CpuLayout = Field(
        "auto",
        description="vLLM's processes on a CPU machine: small-cpu runs the model in the engine "
        "core on one thread (vLLM's worker process busy-waits beside it, which starves the "
        "orchestrator on few cores); stock is vLLM's own; auto is small-cpu on CPU-only machines "
        "with up to 4 cores. Same tokens either way.",
    )

    def resolved_model(self, base_dir: Path | None) -> str:
        path = Path(self.model)
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            return str((base_dir / path).resolve())
        return str(path.resolve()) if path.exists() else self.model


class OpenAIEngineConfig(VLLMBackedConfig):
    """One or several OpenAI-compatible ``/v1/completions`` servers (e.g. ``vllm serve``)."""

    kind: Literal["openai"] = "openai"
    engine_class: ClassVar[str] = "branchwise.orchestrator.engines.openai_engine:OpenAIEngine"
    plumbing: ClassVar[frozenset[str]] = frozenset(
        {"base_urls", "timeout", "max_retries", "backoff_seconds", "requests_per_second",
         "max_concurrency", "api_key_env", "tokenizer", "local_tokenizer", "http_client",
         "health_check_seconds", "stop_tokens"}
    )  # fmt: skip
    base_urls: list[str] = Field(min_length=1, description="Server roots, e.g. http://h:8000.")
    model: str = Field(description="Model name the servers serve.")
    timeout: float = Field(120.0, gt=0, description="Seconds per HTTP request.")
    max_retries: int = Field(4, ge=0, description="Retries on 5xx, 429, 408, time-outs, refused.")
    backoff_seconds: float = Field(0.5, gt=0, description="First retry delay; doubles each try.")
    requests_per_second: float | None = Field(
        None, gt=0, description="Rate limit across all servers (asyncio-throttle)."
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        description="Most requests in flight across the fleet. None: 256 per server (vLLM's "
        "default max_num_seqs), so a step search keeps each server's batch full; the client's "
        "cost per request does not grow with it (benchmarks/peers.py, http_client.py).",
    )

    @property
    def in_flight_limit(self) -> int:
        """``max_concurrency``, or 256 per server when unset."""
        return self.max_concurrency or 256 * len(self.base_urls)

    api_key_env: str | None = Field(None, description="Environment variable with an API key.")
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="HTTP client library; aiohttp (Branchwise's one HTTP client) costs the same "
        "per request however many are in flight (benchmarks/http_client.py); httpx needs "
        "`pip install httpx`.",
    )
    health_check_seconds: float | None = Field(
        5.0,
        gt=0,
        description="With several servers, seconds between GET /health checks that mark a "
        "server down (no answer, or 5xx: its engine died) or back up; a failed connection "
        "marks one down at once. None: no checks.",
    )
    tokenizer: str | None = Field(
        None,
        description="The served model's tokenizer folder (relative to the recipe): render "
        "prompts and decode here instead of asking the server's /tokenize and /detokenize.",
    )

    local_tokenizer: bool = Field(
        True,
        description="Without `tokenizer`: decode and encode plain text with the served "
        "model's own folder (the servers' /v1/models root) when it is on this machine and "
        "agrees with the server on a probe, instead of a /detokenize call per completion.",
    )


class ScriptedThinking(BaseModel):
    """The scripted engine as a reasoning model (``<think>`` lines, then the answer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lines: tuple[int, int] = Field(
        (1, 6), description="Fewest and most thinking lines a sample plans (drawn per sample)."
    )
    decay: float = Field(
        0.7, gt=0, le=1, description="Each thinking line multiplies the answer's error rate."
    )

    @model_validator(mode="after")
    def _check_lines(self) -> ScriptedThinking:
        low, high = self.lines
        if not 0 <= low <= high:
            raise ValueError(f"thinking.lines: {list(self.lines)} must be 0 <= fewest <= most")
        return self


class ScriptedEngineConfig(EngineConfig):
    """A deterministic stand-in engine that replays reference solutions with errors."""

    kind: Literal["scripted"] = "scripted"
    engine_class: ClassVar[str] = "branchwise.orchestrator.engines.scripted:ScriptedEngine"
    token_level: ClassVar[bool] = True
    given_logprobs: ClassVar[bool] = True
    arithmetic_sampling: ClassVar[bool] = True
    # `solutions`, like the recipe's dataset, says which problems it knows, not how it answers.
    plumbing: ClassVar[frozenset[str]] = frozenset({"seconds_per_token", "solutions"})
    error_rate: float = Field(0.3, ge=0, le=1, description="Chance that a step goes wrong.")
    seconds_per_token: float = Field(0.0, ge=0, description="Simulated decode latency.")
    solutions: str | None = Field(
        None,
        description="JSONL file (relative to the recipe) of problems whose reference `solution` "
        "the engine replays; without one it knows no question and answers 'I do not know.'.",
    )
    thinking: ScriptedThinking | None = Field(
        None, description="Think in <think> ... </think> before answering (a reasoning model)."
    )


# The built-in engines' configs, by import path (lazy, like the other registries).
BUILTIN_ENGINES: dict[str, str] = {
    "vllm": "branchwise.orchestrator.engines.config:VLLMEngineConfig",
    "openai": "branchwise.orchestrator.engines.config:OpenAIEngineConfig",
    "scripted": "branchwise.orchestrator.engines.config:ScriptedEngineConfig",
}

ENGINES: Registry[EngineConfig] = Registry(
    "engine", EngineConfig, group="branchwise.engines", builtins=BUILTIN_ENGINES
)


def given_logprobs_refusal(strategy: str, engine: str) -> str:
    """The one-line refusal of a strategy that scores given tokens on an engine that cannot."""
    able = ", ".join(sorted(name for name, config in ENGINES if config.given_logprobs))
    return (
        f"strategy.name: {strategy} needs the log-probabilities of given tokens "
        f"(port.logprobs_of), which engine {engine!r} cannot give (engines that can: {able})"
    )


def arithmetic_engines() -> list[str]:
    """The engine kinds that can sample arithmetically (for one-line refusals)."""
    return [name for name in ENGINES.names() if ENGINES.get(name).arithmetic_sampling]

"""Process and outcome reward models (``prm``, ``orm``) on any pooling backend.

The model reads the prompt followed by the path's steps and is read at the last token of
each step: for newline-delimited steps that is the newline that closes the step, and for the
final answer line (which has no newline) its last character; exactly the positions the
testbed PRM is trained on. Text is tokenized piece by piece (prompt with special tokens,
then each step without), so the position of every step end is known exactly; for a
character or byte-level tokenizer this equals tokenizing the whole text.

Incremental scoring: a causal model's score at the end of step i depends only on the text up
to step i, so values are cached by step prefix (prompt + steps[:i+1]). A child whose parent
was scored keeps the parent's step values and only its new steps are scored (the model still
reads the whole prefix, as a causal model must); a node whose every step prefix is cached
(a re-visit, a sibling identical to one scored before) sends nothing to the model, and
identical paths scored at the same moment share one request.
Requests from all concurrent searches meet in one :class:`~rewards.batching.MicroBatcher`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from core.graph import Score
from core.problem import Problem
from core.scoring import Candidate, Scorer, ScorerConfig, ScorerResources
from rewards.aggregate import StepAggregation
from rewards.batching import MicroBatcher
from rewards.pooling import Activation, TokenScoreBackend, class_score


class RewardModelConfig(ScorerConfig):
    # the three backends give the same scores (within 1e-3, tested); the rest is speed
    plumbing: ClassVar[frozenset[str]] = frozenset(
        {"backend", "base_url", "tokenizer", "max_batch", "max_wait_ms", "timeout_seconds",
         "cache_steps", "gpu_memory_utilization", "threads"}
    )  # fmt: skip
    backend: Literal["vllm", "http", "torch"] = Field(
        "vllm",
        description="vllm: in-process pooling engine; http: a vLLM /pooling server; "
        "torch: transformers in this process.",
    )
    model: str = Field(description="Model folder (relative to the recipe), or served name (http).")
    base_url: str | None = Field(None, description="Server root for backend=http.")
    tokenizer: str | None = Field(
        None,
        description="backend=http: tokenizer folder to encode with locally instead of asking "
        "the server's /tokenize (it must be the served model's tokenizer).",
    )
    label: int = Field(1, ge=0, description="Class whose probability is the score.")
    activation: Activation = Field("softmax", description="Applied to the class logits.")
    aggregation: StepAggregation = Field(
        StepAggregation(), description="Step values -> Score.value (PRM)."
    )
    max_batch: int = Field(64, ge=1, description="Most sequences per model call.")
    max_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill up.")
    timeout_seconds: float = Field(120.0, gt=0, description="Per-node limit; then it fails.")
    cache_steps: int = Field(200_000, ge=0, description="Step-prefix values kept (0: none).")
    dtype: str = Field("float32", description="Weights dtype (vllm, torch).")
    max_model_len: int | None = Field(None, ge=16, description="Context cap (vllm).")
    gpu_memory_utilization: float = Field(
        0.1, gt=0, le=1, description="Memory share for the pooling engine's cache (vllm)."
    )
    threads: int | None = Field(None, ge=1, description="torch threads (torch).")

    @model_validator(mode="after")
    def _check_backend(self) -> RewardModelConfig:
        if self.backend == "http" and not self.base_url:
            raise ValueError("base_url: required when backend is 'http'")
        return self


@dataclass
class ScoringStats:
    """Steps read from the model vs reused from the prefix cache, and sequences sent."""

    steps_scored: int = 0
    steps_reused: int = 0
    sequences: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class _Request:
    ids: list[int]
    positions: list[int]


class ProcessRewardModel(Scorer):
    """A PRM: one value per step (the label's probability at the step's last token)."""

    config_model = RewardModelConfig
    description = "PRM: per-step scores from a token classifier (vLLM pooling / HTTP / torch)."
    step_level = True

    def __init__(self, config: ScorerConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        assert isinstance(config, RewardModelConfig)
        self.cfg = config
        self.backend = build_backend(config, resources)
        self.stats = ScoringStats()
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._prompt_ids: dict[str, list[int]] = {}
        self._step_ids: OrderedDict[str, list[int]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[list[float]]] = {}
        self._batcher: MicroBatcher[_Request, list[float]] = MicroBatcher(
            self._run_batch, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms
        )

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        return list(await asyncio.gather(*(self._score_one(c) for c in candidates)))

    async def _score_one(self, candidate: Candidate) -> Score:
        try:
            async with asyncio.timeout(self.cfg.timeout_seconds):
                values = await self.step_values(candidate)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return Score(value=None, error=f"timed out after {self.cfg.timeout_seconds} s")
        except Exception as exc:  # one node's failure does not fail its batch-mates
            return Score(value=None, error=f"{type(exc).__name__}: {exc}")
        return self.to_score(values)

    def to_score(self, values: list[float]) -> Score:
        return Score(value=self.cfg.aggregation(values), step_values=tuple(values))

    async def step_values(self, candidate: Candidate) -> list[float]:
        """The model's value at the end of each step, reusing cached step prefixes."""
        keys = _prefix_keys(candidate.prompt, candidate.steps)
        cached = [self._cache.get(k) for k in keys]
        missing = [i for i, v in enumerate(cached) if v is None]
        if not missing:
            self.stats.steps_reused += len(keys)
            return [float(v) for v in cached if v is not None]
        last = missing[-1]
        # Identical paths in flight at once (duplicate siblings) share one model request.
        request = self._inflight.get(keys[last])
        owner = request is None
        if request is None:
            request = asyncio.ensure_future(self._request(candidate, last))
            self._inflight[keys[last]] = request
            request.add_done_callback(functools.partial(self._forget, keys[last]))
        values = await asyncio.shield(request)
        scored = len(missing) if owner else 0
        self.stats.steps_scored += scored
        self.stats.steps_reused += len(keys) - scored
        # Steps the cache already had keep their cached value, so a child always agrees with
        # its parent on the steps they share (batch padding may move the last float bits).
        merged = [c if c is not None else v for c, v in zip(cached, values, strict=True)]
        for key, value in zip(keys, merged, strict=True):
            self._remember(key, value)
        return merged

    async def _request(self, candidate: Candidate, last: int) -> list[float]:
        """Values at the end of steps 0..last (reading every step end costs no compute)."""
        ids, ends = await self._tokens(candidate.prompt, candidate.steps[: last + 1])
        limit = self.backend.max_length
        if limit is not None and len(ids) > limit:
            raise ValueError(f"path has {len(ids)} tokens; the reward model takes {limit}")
        return await self._batcher.submit(_Request(ids, ends))

    async def _tokens(self, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        if prompt not in self._prompt_ids:
            self._prompt_ids[prompt] = await self.backend.encode(prompt, add_special_tokens=True)
        # A step recurs in every descendant: encode each distinct step once, the new ones
        # concurrently (over HTTP each is a round trip).
        new = [step for step in dict.fromkeys(steps) if step not in self._step_ids]
        pieces = await asyncio.gather(
            *(self.backend.encode(step, add_special_tokens=False) for step in new)
        )
        for step, piece in zip(new, pieces, strict=True):
            self._step_ids[step] = piece
        ids = list(self._prompt_ids[prompt])
        ends: list[int] = []
        for step in steps:
            piece = self._step_ids[step]
            if not piece:
                raise ValueError(f"step {step!r} encodes to no tokens")
            ids.extend(piece)
            ends.append(len(ids) - 1)
        while len(self._step_ids) > max(self.cfg.cache_steps, 4096):
            self._step_ids.popitem(last=False)
        return ids, ends

    async def _run_batch(self, batch: list[_Request]) -> list[list[float]]:
        logits = await self.backend.logits_at([(r.ids, r.positions) for r in batch])
        self.stats.sequences += len(batch)
        self.stats.tokens += sum(len(r.ids) for r in batch)
        return [
            [float(v) for v in class_score(rows, self.cfg.activation, self.cfg.label)]
            for rows in logits
        ]

    def _forget(self, key: bytes, _: object) -> None:
        self._inflight.pop(key, None)

    def _remember(self, key: bytes, value: float) -> None:
        if self.cfg.cache_steps == 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.cfg.cache_steps:
            self._cache.popitem(last=False)

    async def aclose(self) -> None:
        await self._batcher.aclose()
        await self.backend.close()


class OutcomeRewardModel(ProcessRewardModel):
    """An ORM on the same backends: the value at the path's last token only."""

    description = "ORM: one score at the path's last token (vLLM pooling / HTTP / torch)."
    step_level = False

    def to_score(self, values: list[float]) -> Score:
        return Score(value=values[-1] if values else None)


def _prefix_keys(prompt: str, steps: Sequence[str]) -> list[bytes]:
    """One digest per step prefix, chained so each costs one hash of its own step."""
    digest = hashlib.blake2b(prompt.encode(), digest_size=16).digest()
    keys = []
    for step in steps:
        digest = hashlib.blake2b(digest + b"\x1f" + step.encode(), digest_size=16).digest()
        keys.append(digest)
    return keys


def build_backend(config: RewardModelConfig, resources: ScorerResources) -> TokenScoreBackend:
    """The backend a config names; heavy imports happen only on first use."""
    model = config.model
    if config.backend != "http":
        local = resources.base_dir / model
        model = str(local.resolve()) if local.exists() else model
    if config.backend == "torch":
        from rewards.torch_pooling import TorchTokenScores

        return TorchTokenScores(model, dtype=config.dtype, threads=config.threads)
    if config.backend == "http":
        from rewards.http_pooling import HTTPTokenScores

        assert config.base_url is not None
        tokenizer = config.tokenizer
        if tokenizer is not None and (resources.base_dir / tokenizer).exists():
            tokenizer = str((resources.base_dir / tokenizer).resolve())
        return HTTPTokenScores(
            config.base_url,
            model,
            timeout=config.timeout_seconds,
            max_length=config.max_model_len,
            tokenizer=tokenizer,
        )
    from rewards.vllm_pooling import VLLMTokenScores

    return VLLMTokenScores(
        model,
        dtype=config.dtype,
        max_model_len=config.max_model_len,
        gpu_memory_utilization=config.gpu_memory_utilization,
    )

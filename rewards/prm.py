"""Process and outcome reward models (``prm``, ``orm``) on any pooling backend, in any format.

What the model reads and where is the recipe's ``format`` (``rewards.formats``): a Qwen-style
PRM reads the chat-templated question and ``<extra_0>``-tagged steps, a Math-Shepherd model
the ``" ки"``-tagged text, an RLHFlow model the steps as chat turns, a Skywork value-head
model ``bos + question`` and newline-tagged steps, a sequence classifier the whole chat; and
``token_classify`` (the default) reads the policy's prompt followed by the steps at the last
token of each step, the positions the testbed PRM is trained on. Rendering is
``rewards.rendering``, tokens and positions ``rewards.inputs``; this module adds caching,
batching and failure handling.

Incremental scoring: every format's value at step i depends only on the input up to step i's
read point (causal models, inputs that grow step by step), so values are cached by step
prefix (format and rendering options + context + steps[:i+1]). A child whose parent was
scored keeps the parent's step values and only its new steps are scored (the model still reads
the whole prefix, as a causal model must); a node whose every step prefix is cached sends
nothing to the model, and identical paths scored at the same moment share one request. A
per-path format (``sequence_classify``) caches whole paths only.
Requests from all concurrent searches meet in one :class:`~rewards.batching.MicroBatcher`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer, ScorerResources
from branchwise.rewards.batching import MicroBatcher
from branchwise.rewards.formats import RewardFormat, get_format
from branchwise.rewards.inputs import InputEncoder
from branchwise.rewards.loading import build_backend, chat_template, load_chat, tokenizer_folder
from branchwise.rewards.pooling import class_score
from branchwise.rewards.rendering import ChatRenderer, RenderOptions, render
from branchwise.rewards.rm_config import CHAT_LAYOUTS, RewardModelConfig

__all__ = [
    "OutcomeRewardModel",
    "ProcessRewardModel",
    "RewardModelConfig",
    "ScoringStats",
    "build_backend",
]


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


class RewardModel(Scorer[RewardModelConfig]):
    """A reward model on one of the backends: values read where the recipe's ``format`` says
    (see module doc). :class:`ProcessRewardModel` keeps every step's value,
    :class:`OutcomeRewardModel` the last one."""

    config_model = RewardModelConfig

    def __init__(self, config: RewardModelConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        self.cfg = config
        self.format: RewardFormat = get_format(config.format)
        self.options = RenderOptions(
            step_tag=config.step_tag, system_prompt=config.system_prompt, answer=config.answer
        )
        self.backend = build_backend(config, resources)
        self.stats = ScoringStats()
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._seed = _format_seed(config)
        self._chat: ChatRenderer | None = None
        self._bos: str | None = None
        self._text_loaded = False
        self._inputs = InputEncoder(self._encode)
        self._inflight: dict[bytes, asyncio.Future[list[float]]] = {}
        self._batcher: MicroBatcher[_Request, list[float]] = MicroBatcher(
            self._run_batch, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms
        )

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        return list(await asyncio.gather(*(self._score_one(problem, c) for c in candidates)))

    async def _score_one(self, problem: Problem, candidate: Candidate) -> Score:
        try:
            async with asyncio.timeout(self.cfg.timeout_seconds):
                values = await self.step_values(candidate, problem)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return Score(value=None, error=f"timed out after {self.cfg.timeout_seconds} s")
        except Exception as exc:  # one node's failure does not fail its batch-mates
            return Score(value=None, error=f"{type(exc).__name__}: {exc}")
        return self.to_score(values)

    @abstractmethod
    def to_score(self, values: list[float]) -> Score:
        """The score of a path whose steps the model valued ``values``."""

    def context(self, candidate: Candidate, problem: Problem | None) -> str:
        """The text the input starts from: the policy's prompt or the problem's question."""
        if self.format.context == "prompt":
            return candidate.prompt
        if problem is None:
            raise ValueError(f"format {self.format.name!r} reads the problem's question")
        return problem.question

    async def step_values(
        self, candidate: Candidate, problem: Problem | None = None
    ) -> list[float]:
        """The model's value at each step (one value for the path if the format reads once)."""
        context = self.context(candidate, problem)
        keys = _prefix_keys(self._seed + context.encode(), candidate.steps)
        if not self.format.per_step:
            keys = keys[-1:]
        cached = [self._cache.get(k) for k in keys]
        missing = [i for i, v in enumerate(cached) if v is None]
        if not missing:
            self.stats.steps_reused += len(keys)
            return [float(v) for v in cached if v is not None]
        last = missing[-1] if self.format.per_step else len(candidate.steps) - 1
        # Identical paths in flight at once (duplicate siblings) share one model request.
        request = self._inflight.get(keys[missing[-1]])
        owner = request is None
        if request is None:
            request = asyncio.ensure_future(self._request(context, candidate.steps[: last + 1]))
            self._inflight[keys[missing[-1]]] = request
            request.add_done_callback(functools.partial(self._forget, keys[missing[-1]]))
        values = await asyncio.shield(request)
        scored = len(missing) if owner else 0
        self.stats.steps_scored += scored
        self.stats.steps_reused += len(keys) - scored
        # Steps the cache already had keep their cached value, so a child always agrees with
        # its parent on the steps they share (batch padding may move the last float bits).
        # Steps after the last missing one are all cached (values covers steps[: last + 1]).
        merged = [c if c is not None else values[i] for i, c in enumerate(cached)]
        for key, value in zip(keys, merged, strict=True):
            self._remember(key, value)
        return merged

    async def _request(self, context: str, steps: Sequence[str]) -> list[float]:
        """Values at every read point of ``steps`` (reading every step costs no compute)."""
        if _reads_tokenizer_text(self.format):
            await self._load_text_tools()
        rendered = render(
            self.format, self.options, context=context, steps=steps, chat=self._chat, bos=self._bos
        )
        ids, positions = await self._inputs.ids_and_positions(rendered)
        limit = self.backend.max_length
        if limit is not None and len(ids) > limit:
            raise ValueError(f"path has {len(ids)} tokens; the reward model takes {limit}")
        return await self._batcher.submit(_Request(ids, positions))

    async def _encode(self, text: str, special: bool) -> list[int]:
        return await self.backend.encode(text, add_special_tokens=special)

    async def _load_text_tools(self) -> None:
        if not self._text_loaded:
            folder = tokenizer_folder(self.cfg, self.resources)
            template = chat_template(self.cfg, self.resources)
            self._chat, self._bos = await asyncio.to_thread(load_chat, folder, template)
            self._text_loaded = True

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


class ProcessRewardModel(RewardModel):
    """A PRM: one value per step; its value folds them by the config's ``aggregation``."""

    description = (
        "PRM: per-step scores; format qwen_prm | shepherd | rlhflow | value_head | "
        "token_classify on vLLM pooling / HTTP / torch (per format)."
    )
    step_level = True

    def to_score(self, values: list[float]) -> Score:
        return Score(value=self.cfg.aggregation(values), step_values=tuple(values))


class OutcomeRewardModel(RewardModel):
    """An ORM on the same backends: the value at the path's last token only."""

    description = (
        "ORM: one score per path; format sequence_classify (raw reward by default) or any PRM "
        "format's last step, on vLLM pooling / HTTP / torch (per format)."
    )
    step_level = False

    def to_score(self, values: list[float]) -> Score:
        return Score(value=values[-1] if values else None)


def _reads_tokenizer_text(fmt: RewardFormat) -> bool:
    """Chat layouts render the RM's chat template; a value-head input starts with its bos."""
    return fmt.layout in CHAT_LAYOUTS or (fmt.layout == "pieces" and fmt.context == "question")


def _format_seed(config: RewardModelConfig) -> bytes:
    """What decides the rendering besides the path: cache keys start from it."""
    rendering = [config.format, config.step_tag, config.system_prompt, config.answer,
                 config.chat_template]  # fmt: skip
    return json.dumps(rendering).encode() + b"\x1e"


def _prefix_keys(seed: bytes, steps: Sequence[str]) -> list[bytes]:
    """One digest per step prefix, chained so each costs one hash of its own step."""
    digest = hashlib.blake2b(seed, digest_size=16).digest()
    keys = []
    for step in steps:
        digest = hashlib.blake2b(digest + b"\x1f" + step.encode(), digest_size=16).digest()
        keys.append(digest)
    return keys

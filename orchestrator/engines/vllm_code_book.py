"""Arithmetic sampling inside vLLM: a logits processor that decodes tokens from a code point.

vLLM v1 runs logits processors in its engine core on every step's batch of logits; this one
acts only on requests whose ``SamplingParams.extra_args`` carry a code point
(:data:`CODE_KEY`, set by :func:`~branchwise.orchestrator.engines.vllm_engine.to_sampling_params`).
For such a row it builds the distribution the sampler would draw from (temperature, then
min-p, top-k and top-p as vLLM applies them), lays the tokens out in id order, picks the
token whose interval holds the code (see :mod:`~branchwise.orchestrator.engines.code_book`)
and forces it: every other logit becomes -inf, so vLLM's own sampler can only take it.
Logprobs are unaffected: vLLM computes them from the raw logits before any processor.

The code before each output token is kept in the request's own ``extra_args`` (a list, one
entry per position), so a request that is preempted and resumed, or a step that is
recomputed, continues from the right code.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

if TYPE_CHECKING:
    from vllm import SamplingParams

CODE_KEY = "branchwise_code"
"""``extra_args`` key of a request's code point in [0, 1)."""
_HISTORY_KEY = "_branchwise_codes"
_GREEDY = 1e-5  # vLLM's own threshold below which a temperature means greedy
_BELOW_ONE = math.nextafter(1.0, 0.0)


def sampling_distribution(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, min_p: float
) -> torch.Tensor:
    """The probabilities (float64, vocabulary order) vLLM's sampler would draw from."""
    scaled = logits.to(torch.float64) / temperature
    if min_p > 0:
        probs = torch.softmax(scaled, dim=-1)
        scaled = scaled.masked_fill(probs < min_p * probs.max(), -math.inf)
    if 0 < top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    if top_p < 1.0:
        ascending, order = torch.sort(scaled)
        cumulative = torch.cumsum(torch.softmax(ascending, dim=-1), dim=-1)
        dropped = cumulative <= 1 - top_p
        dropped[-1] = False  # at least one token stays
        scaled = scaled.clone()
        scaled[order[dropped]] = -math.inf
    return torch.softmax(scaled, dim=-1)


def pick_token(probabilities: torch.Tensor, code: float) -> tuple[int, float]:
    """The token whose code-book interval (tokens in id order) holds ``code``, and the code
    rescaled into that interval."""
    cumulative = torch.cumsum(probabilities, dim=-1)
    total = float(cumulative[-1])
    target = code * total
    index = int(
        torch.searchsorted(cumulative, torch.tensor([target], dtype=cumulative.dtype), right=True)[
            0
        ]
    )
    if index >= probabilities.numel():  # rounding put the code past the end
        index = int(torch.nonzero(probabilities > 0)[-1])
        return index, _BELOW_ONE
    p = float(probabilities[index])
    low = float(cumulative[index]) - p
    return index, min(max((target - low) / p, 0.0), _BELOW_ONE)


class _CodeBookRow:
    """One request's decoder: called with its output tokens so far and its logits row."""

    def __init__(self, params: SamplingParams, history: list[float]) -> None:
        self.temperature = float(params.temperature)
        self.top_p = float(params.top_p)
        self.top_k = int(params.top_k or 0)
        self.min_p = float(params.min_p or 0.0)
        self.history = history

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        position = len(output_ids)
        if position >= len(self.history):
            return logits  # unreachable: every token of such a request was picked here
        del self.history[position + 1 :]  # a recomputed step starts from its own code
        probabilities = sampling_distribution(
            logits, self.temperature, self.top_p, self.top_k, self.min_p
        )
        token, following = pick_token(probabilities, self.history[position])
        self.history.append(following)
        forced = torch.full_like(logits, -math.inf)
        forced[token] = 0.0
        return forced


class ArithmeticCodeProcessor(AdapterLogitsProcessor):
    """Forces, for requests with a code point, the token the code book gives (module doc)."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        code = (sampling_params.extra_args or {}).get(CODE_KEY)
        if code is not None and not (isinstance(code, float) and 0.0 <= code < 1.0):
            raise ValueError(f"extra_args[{CODE_KEY!r}]: {code!r} is not a code point in [0, 1)")

    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token

    def new_req_logits_processor(self, params: SamplingParams) -> Any:
        extra = params.extra_args
        if not extra or CODE_KEY not in extra or params.temperature < _GREEDY:
            return None  # ancestral, or greedy (the code book is one token)
        history: list[float] = extra.setdefault(_HISTORY_KEY, [float(extra[CODE_KEY])])
        return _CodeBookRow(params, history)

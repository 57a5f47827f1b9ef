"""Log-probabilities of given tokens on in-process vLLM (``VLLMEngine.logprobs_of``).

vLLM scores a forced continuation as prompt log-probabilities: the prompt and the
continuation go in as one prompt with ``prompt_logprobs=0`` (each prompt token's own
log-probability, raw: temperature 1, before any top-k/top-p) and one throw-away sampled
token. vLLM reads no prefix cache for such a request (every prompt position needs its
logits), so a scoring request costs a full prefill of prompt plus continuation.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.types import LogprobRequest, LogprobResult


async def score_given_tokens(
    llm: Any, request: LogprobRequest, inflight: set[str]
) -> LogprobResult:
    """Run one scoring request on ``llm`` (an ``AsyncLLM``); ``inflight`` tracks its id so
    closing the engine aborts it."""
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    if not request.token_ids:
        return LogprobResult((), prompt_tokens=len(request.prompt_token_ids))
    params = SamplingParams(
        max_tokens=1,
        temperature=0.0,
        prompt_logprobs=0,
        detokenize=False,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )
    ids = list(request.prompt_token_ids + request.token_ids)
    rid = request.request_id
    inflight.add(rid)
    generator = llm.generate(TokensPrompt(prompt_token_ids=ids), params, request_id=rid)
    final: Any = None
    try:
        async for output in generator:
            final = output
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception as exc:
        raise EngineError(f"vLLM failed scoring {rid}: {type(exc).__name__}: {exc}") from exc
    finally:
        inflight.discard(rid)
        await generator.aclose()  # aborts in the engine if it had not finished
    if final is None or final.prompt_logprobs is None:
        raise EngineError(f"vLLM returned no prompt log-probabilities for {rid}")
    scored = read_given(final.prompt_logprobs, request.token_ids, len(request.prompt_token_ids))
    return LogprobResult(scored, prompt_tokens=len(ids), cached_prompt_tokens=0)


def read_given(positions: Sequence[Any], token_ids: Sequence[int], start: int) -> tuple[float, ...]:
    """The log-probability of each of ``token_ids``, which sit at ``start`` onwards in
    vLLM's per-position prompt log-probabilities (position 0, with no context, is None)."""
    out: list[float] = []
    for token_id, position in zip(token_ids, positions[start:], strict=True):
        entry = None if position is None else position.get(token_id)
        out.append(float(entry.logprob) if entry is not None else -math.inf)
    return tuple(out)

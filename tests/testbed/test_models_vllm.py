"""The committed testbed models in vLLM: chat prompts, BPE round trips, the Qwen-format PRM."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bpe_tokenizer import load_tokenizer, render_prompt
from prm_model import ARCHITECTURE, ProcessRewardModel, prm_input, step_rewards
from safetensors.torch import load_file
from task import read_jsonl

from branchwise.verifiers.arithmetic_steps import check_steps, extract_answer, parse_steps
from tests.testbed.conftest import POLICY_DIR, PRM_DIR, TESTBED

pytestmark = pytest.mark.vllm

EVAL = read_jsonl(TESTBED / "data" / "eval.jsonl")[:24]


def prompt_ids(question: str) -> list[int]:
    tokenizer = load_tokenizer(POLICY_DIR)
    ids: list[int] = tokenizer(render_prompt(question), add_special_tokens=False)["input_ids"]
    return ids


def test_policy_text_round_trips_and_parses(testbed_policy_llm: Any) -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = testbed_policy_llm.get_tokenizer()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    outputs = testbed_policy_llm.generate(
        [TokensPrompt(prompt_token_ids=prompt_ids(p["question"])) for p in EVAL],
        SamplingParams(temperature=0.0, max_tokens=160),
        use_tqdm=False,
    )
    answered = 0
    for problem, out in zip(EVAL, outputs, strict=True):
        completion = out.outputs[0]
        assert tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text
        steps = parse_steps(completion.text)
        assert steps and len(check_steps(problem, completion.text)) == len(steps)
        if completion.finish_reason == "stop":
            assert completion.token_ids[-1] == im_end
            answered += extract_answer(completion.text) is not None
    assert answered >= 0.9 * len(EVAL)


def test_stop_at_the_step_delimiter_cuts_text_not_tokens(testbed_policy_llm: Any) -> None:
    """vLLM cuts `text` at the stop string; the ids keep the whole last (merged) token."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = testbed_policy_llm.get_tokenizer()
    params = SamplingParams(
        temperature=1.0, max_tokens=40, stop=["\n\n"], include_stop_str_in_output=True, n=4
    )
    outputs = testbed_policy_llm.generate(
        [TokensPrompt(prompt_token_ids=prompt_ids(p["question"])) for p in EVAL[:4]],
        params,
        use_tqdm=False,
    )
    for out in outputs:
        for completion in out.outputs:
            assert completion.text.endswith("\n\n") and completion.text.count("\n\n") == 1
            assert tokenizer.decode(completion.token_ids).startswith(completion.text)
            assert len(parse_steps(completion.text)) == 1


def test_prm_vllm_scores_equal_torch(testbed_prm_llm: Any) -> None:
    from vllm_engines import step_probabilities

    texts = [prm_input(p["question"], parse_steps(p["solution"])) for p in EVAL[:8]]
    texts.append(prm_input(EVAL[0]["question"], ["1 + 1 = 2."]))
    served = step_probabilities(testbed_prm_llm, texts)
    local = step_rewards(ProcessRewardModel.load(PRM_DIR), load_tokenizer(PRM_DIR), texts)
    for text, row, expected in zip(texts, served, local, strict=True):
        assert len(row) == len(expected) == text.count("<extra_0>")
        assert max(abs(a - b) for a, b in zip(row, expected, strict=True)) < 1e-4


def test_prm_ranks_policy_samples_within_a_problem(
    testbed_policy_llm: Any, testbed_prm_llm: Any
) -> None:
    from card_metrics import roc_auc, within_problem_auc
    from vllm_engines import sample_solutions, step_probabilities

    problems = read_jsonl(TESTBED / "data" / "val.jsonl")[:48]
    texts = sample_solutions(
        testbed_policy_llm, [prompt_ids(p["question"]) for p in problems], n=4, temperature=1.0
    )
    items = [(p, t) for p, samples in zip(problems, texts, strict=True) for t in samples]
    rows = step_probabilities(
        testbed_prm_llm, [prm_input(p["question"], parse_steps(t)) for p, t in items]
    )
    scores, labels = [], []
    groups: dict[str, list[tuple[float, bool]]] = {}
    for (problem, text), row in zip(items, rows, strict=True):
        verdicts = check_steps(problem, text)
        assert len(row) == len(verdicts) and all(0.0 <= s <= 1.0 for s in row)
        scores.extend(row)
        labels.extend(verdicts)
        groups.setdefault(problem["id"], []).append((row[-1], all(verdicts)))
    assert roc_auc(scores, labels) > 0.8
    assert within_problem_auc(list(groups.values())) > 0.6


def test_prm_is_saved_in_the_qwen_prm_layout() -> None:
    config = json.loads((PRM_DIR / "config.json").read_text())
    assert config["architectures"] == [ARCHITECTURE] and config["num_labels"] == 2
    weights = load_file(PRM_DIR / "model.safetensors")
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"} <= weights.keys()
    assert not any(k.startswith("lm_head") for k in weights)
    policy = json.loads((POLICY_DIR / "config.json").read_text())
    assert config["num_hidden_layers"] > policy["num_hidden_layers"]

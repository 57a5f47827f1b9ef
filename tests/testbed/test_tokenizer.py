"""The committed byte-level BPE tokenizer: Qwen2-style specials, ChatML, delimiter merges."""

from __future__ import annotations

import json

import bpe_tokenizer as bt  # examples/testbed is put on sys.path by conftest.py
import pytest

from tests.testbed.conftest import TESTBED

QUESTION = "Mia has 7 pens. She gets 15 more. How many pens now?"
SOLUTION = "7 + 15 = 22.\n\nThe answer is \\boxed{22}."


@pytest.fixture(scope="module")
def tokenizer() -> bt.PreTrainedTokenizerBase:
    return bt.load_tokenizer(TESTBED / "tokenizer")


def test_special_tokens_and_config(tokenizer: bt.PreTrainedTokenizerBase) -> None:
    ids = bt.special_ids(tokenizer)
    assert sorted(ids.values()) == list(range(len(tokenizer) - 4, len(tokenizer)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None
    config = json.loads((TESTBED / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["bos_token"] is None and config["chat_template"] == bt.CHAT_TEMPLATE
    for token in bt.SPECIAL_TOKENS:  # each special is one token, never split
        assert tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"][1] == ids[token]


def test_round_trip_and_digits(tokenizer: bt.PreTrainedTokenizerBase) -> None:
    text = bt.render_chat(QUESTION, answer=SOLUTION, add_generation_prompt=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    pieces = tokenizer.convert_ids_to_tokens(
        tokenizer("123 + 45", add_special_tokens=False)["input_ids"]
    )
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == ["1", "2", "3", "4", "5"]
    assert tokenizer.decode(tokenizer("é, ü ✓\n\n\n x", add_special_tokens=False)["input_ids"]) == (
        "é, ü ✓\n\n\n x"
    )


def test_chat_template_renders_chatml(tokenizer: bt.PreTrainedTokenizerBase) -> None:
    user = [{"role": "user", "content": QUESTION}]
    rendered = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert (
        rendered
        == bt.render_prompt(QUESTION)
        == (
            "<|im_start|>system\nPlease reason step by step, and put your final answer within "
            f"\\boxed{{}}.<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        )
    )
    few_shot = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert tokenizer.apply_chat_template(few_shot, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    scored = [*user, {"role": "assistant", "content": "s1<extra_0>s2<extra_0>"}]
    assert tokenizer.apply_chat_template(scored, tokenize=False) == bt.render_chat(
        QUESTION, answer="s1<extra_0>s2<extra_0>", add_generation_prompt=False
    )


def test_step_delimiter_merges(tokenizer: bt.PreTrainedTokenizerBase) -> None:
    merged = bt.delimiter_tokens(tokenizer)
    assert ".\n\n" in merged["ends_with_delimiter"]
    assert {"\n\n\n", ".\n\n\n"} <= set(merged["delimiter_inside"])
    # In a solution the step's period and the delimiter are one token.
    pieces = [
        tokenizer.decode([i]) for i in tokenizer(SOLUTION, add_special_tokens=False)["input_ids"]
    ]
    assert ".\n\n" in pieces
    # A longer newline run is one token in which the delimiter ends early.
    pieces = [
        tokenizer.decode([i])
        for i in tokenizer("22.\n\n\nThe", add_special_tokens=False)["input_ids"]
    ]
    assert ".\n\n\n" in pieces


def test_tokenizer_training_is_deterministic() -> None:
    first = bt.train_tokenizer(bt.training_corpus(0, 300), 400)
    second = bt.train_tokenizer(bt.training_corpus(0, 300), 400)
    assert first.to_str() == second.to_str()

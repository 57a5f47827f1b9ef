"""Reward-model formats: rendering and read positions (pure), config checks, and every format
through the torch backend against a plain reading of its model card (tests/reward_cards.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.rewards.formats import FORMATS, get_format
from branchwise.rewards.inputs import InputEncoder
from branchwise.rewards.prm import OutcomeRewardModel, ProcessRewardModel, RewardModelConfig
from branchwise.rewards.rendering import Message, Pieces, RenderOptions, WholeText, render
from examples.lookalikes.build import build
from tests import reward_cards as cards

PROBLEM = Problem(id="p", question=cards.QUESTION)
TOL = 1e-4


def fake_chat(messages: list[Message], *, add_generation_prompt: bool) -> str:
    """A ChatML-like template with visible markers."""
    text = "".join(f"[{m['role']}]{m['content']}[end]\n" for m in messages)
    return text + ("[assistant]" if add_generation_prompt else "")


def options(name: str) -> RenderOptions:
    fmt = get_format(name)
    return RenderOptions(step_tag=fmt.step_tag, system_prompt=fmt.system_prompt, answer=fmt.answer)


def reads(rendered: WholeText, width: int) -> list[str]:
    """The last ``width`` characters before each read point."""
    return [rendered.text[o - width : o] for o in rendered.reads]


STEPS = ("Add: 1 + 2 = 3.\n\n", "Double: 3 * 2 = 6.\n\n")


def test_qwen_prm_renders_the_chat_with_a_tag_after_each_step() -> None:
    out = render(
        get_format("qwen_prm"), options("qwen_prm"), context="Q?", steps=STEPS, chat=fake_chat
    )
    assert isinstance(out, WholeText) and not out.special
    assert out.text == (
        f"[system]{cards.QWEN_SYSTEM}[end]\n[user]Q?[end]\n"
        "[assistant]Add: 1 + 2 = 3.<extra_0>Double: 3 * 2 = 6.<extra_0>[end]\n"
    )
    assert reads(out, 11) == ["3.<extra_0>", "6.<extra_0>"]


def test_shepherd_renders_question_space_tagged_lines() -> None:
    out = render(get_format("shepherd"), options("shepherd"), context="Q?", steps=STEPS)
    assert isinstance(out, WholeText) and out.special
    assert out.text == "Q? Add: 1 + 2 = 3. ки\nDouble: 3 * 2 = 6. ки"
    assert reads(out, 7) == ["= 3. ки", "= 6. ки"]


def test_rlhflow_reads_where_each_assistant_plus_is_predicted() -> None:
    out = render(
        get_format("rlhflow"), options("rlhflow"), context="Q?", steps=STEPS, chat=fake_chat
    )
    assert isinstance(out, WholeText)
    assert out.text == (
        "[user]Q? Add: 1 + 2 = 3.[end]\n[assistant]+[end]\n"
        "[user]Double: 3 * 2 = 6.[end]\n[assistant]+[end]\n"
    )
    assert [out.text[o] for o in out.reads] == ["+", "+"]
    assert all(out.text[:o].endswith("[assistant]") for o in out.reads)


def test_value_head_and_token_classify_are_pieces() -> None:
    vh = render(
        get_format("value_head"), options("value_head"), context="Q?", steps=STEPS, bos="<b>"
    )
    assert vh == Pieces(
        head="<b>Q?\n", head_special=False, steps=tuple(s.strip() for s in STEPS), tag="\n"
    )
    tc = render(get_format("token_classify"), options("token_classify"), context="P\n", steps=STEPS)
    assert tc == Pieces(head="P\n", head_special=True, steps=STEPS, tag="")
    with pytest.raises(ValueError, match="bos"):
        render(get_format("value_head"), options("value_head"), context="Q?", steps=STEPS)


def test_sequence_classify_reads_the_whole_chat_once() -> None:
    fmt = get_format("sequence_classify")
    out = render(fmt, options("sequence_classify"), context="Q?", steps=STEPS, chat=fake_chat)
    assert isinstance(out, WholeText) and out.reads == (len(out.text),)
    assert "[assistant]Add: 1 + 2 = 3.\n\nDouble: 3 * 2 = 6.[end]" in out.text


def char_encode(text: str, special: bool) -> list[int]:
    return ([1] if special else []) + [ord(c) for c in text]


async def merge_encode(text: str, special: bool) -> list[int]:
    """Characters, except that '.X' merges into one token (a BPE-like merge across reads)."""
    return [ord(c) for c in text.replace(".X", "\x01")]


def test_whole_text_positions_are_the_last_token_before_each_read() -> None:
    async def enc(text: str, special: bool) -> list[int]:
        return char_encode(text, special)

    ids, positions = asyncio.run(
        InputEncoder(enc).ids_and_positions(WholeText("ab<t>cd<t>", (5, 10), True))
    )
    assert positions == [5, 10] and ids[0] == 1


def test_a_merge_across_a_read_point_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="crosses the read point"):
        asyncio.run(InputEncoder(merge_encode).ids_and_positions(WholeText("ab.Xc", (3,), False)))


def test_pieces_append_the_tags_last_token_and_read_it() -> None:
    async def enc(text: str, special: bool) -> list[int]:
        return char_encode(text, special)

    ids, positions = asyncio.run(
        InputEncoder(enc).ids_and_positions(Pieces("H", True, ("ab", "c"), "\n"))
    )
    assert ids == [1, ord("H"), ord("a"), ord("b"), 10, ord("c"), 10] and positions == [4, 6]


def config(**values: object) -> RewardModelConfig:
    return RewardModelConfig(**{"kind": "prm", "model": "m", **values})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["shepherd", "rlhflow", "value_head"])
@pytest.mark.parametrize("backend", ["vllm", "http"])
def test_a_backend_that_cannot_serve_a_format_says_which_can(name: str, backend: str) -> None:
    with pytest.raises(ValidationError) as info:
        config(format=name, backend=backend, base_url="http://x", tokenizer="t")
    (error,) = info.value.errors()
    assert "use backend: torch" in error["msg"] and "\n" not in error["msg"]


def test_format_defaults_are_filled_in_and_stated() -> None:
    orm = config(kind="orm", format="sequence_classify")
    assert (orm.activation, orm.label) == ("none", 0)  # the raw reward, not vLLM's sigmoid
    qwen = config(format="qwen_prm")
    assert (qwen.step_tag, qwen.system_prompt, qwen.activation, qwen.label) == (
        "<extra_0>",
        cards.QWEN_SYSTEM,
        "softmax",
        1,
    )
    assert config(format="qwen_prm", system_prompt=None).system_prompt is None
    assert config(format="shepherd", backend="torch").label_tokens == ("+", "-")
    assert (
        config(kind="orm", format="sequence_classify", activation="sigmoid").activation == "sigmoid"
    )


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"format": "sequence_classify"}, "use kind: orm"),
        ({"format": "qwen_prm", "backend": "http", "base_url": "http://x"}, "tokenizer"),
        ({"format": "shepherd", "backend": "torch", "label_tokens": ["+"]}, "label_tokens"),
        ({"format": "token_classify", "system_prompt": "hi"}, "system_prompt"),
        ({"format": "qwen_prm", "step_tag": ""}, "step_tag"),
        ({"format": "nope"}, "format"),
    ],
)
def test_bad_format_settings_name_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        config(**values)


def test_every_format_has_a_lookalike_and_a_card_reading() -> None:
    from examples.lookalikes.build import BUILDERS

    assert set(BUILDERS) == set(FORMATS)
    assert all(hasattr(cards, name) for name in FORMATS)


# --- torch backend against the cards -----------------------------------------------------


@pytest.fixture(scope="module")
def lookalikes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lookalikes")
    return {name: build(name, root / name) for name in FORMATS}


def candidates(prompt: str = cards.QUESTION + "\n") -> list[Candidate]:
    return [
        Candidate(node_id=f"r.{i}", prompt=prompt, steps=steps, answer=None, terminal=False)
        for i, steps in enumerate(cards.PATHS)
    ]


CARD_READINGS: dict[str, Callable[[Path, str, tuple[str, ...]], list[float]]] = {
    "qwen_prm": cards.qwen_prm,
    "shepherd": cards.shepherd,
    "rlhflow": cards.rlhflow,
    "value_head": cards.value_head,
}


@pytest.mark.parametrize("name", sorted(CARD_READINGS))
def test_torch_step_scores_equal_the_cards_reading(name: str, lookalikes: dict[str, Path]) -> None:
    folder = lookalikes[name]
    scorer = ProcessRewardModel(
        config(format=name, model=str(folder), backend="torch"), ScorerResources()
    )
    scores = asyncio.run(scorer.score(PROBLEM, candidates()))
    asyncio.run(scorer.aclose())
    for path, score in zip(cards.PATHS, scores, strict=True):
        assert score.ok, score.error
        expected = CARD_READINGS[name](folder, cards.QUESTION, path)
        assert len(expected) == len(path)
        assert score.step_values == pytest.approx(expected, abs=TOL)
    assert len({round(v, 3) for s in scores for v in s.step_values}) > 3  # scores spread


def test_torch_token_classify_equals_the_plain_reading(lookalikes: dict[str, Path]) -> None:
    folder = lookalikes["token_classify"]
    scorer = ProcessRewardModel(config(model=str(folder), backend="torch"), ScorerResources())
    prompt = cards.QUESTION + "\n"
    scores = asyncio.run(scorer.score(PROBLEM, candidates(prompt)))
    for path, score in zip(cards.PATHS, scores, strict=True):
        assert score.step_values == pytest.approx(
            cards.token_classify(folder, prompt, path), abs=TOL
        )


def test_torch_sequence_classify_is_the_raw_logit(lookalikes: dict[str, Path]) -> None:
    folder = lookalikes["sequence_classify"]
    raw = OutcomeRewardModel(
        config(kind="orm", format="sequence_classify", model=str(folder), backend="torch"),
        ScorerResources(),
    )
    scores = asyncio.run(raw.score(PROBLEM, candidates()))
    expected = [cards.sequence_classify(folder, cards.QUESTION, p) for p in cards.PATHS]
    assert [s.value for s in scores] == pytest.approx(expected, abs=TOL)
    assert any(not 0 <= v <= 1 for v in expected)  # raw: not squashed into a probability
    assert raw.stats.sequences == 3
    again = asyncio.run(raw.score(PROBLEM, candidates()))  # whole paths are cached
    assert raw.stats.sequences == 3 and [s.value for s in again] == [s.value for s in scores]


def test_a_child_reuses_its_parents_values_in_a_chat_format(lookalikes: dict[str, Path]) -> None:
    folder = lookalikes["qwen_prm"]
    scorer = ProcessRewardModel(
        config(format="qwen_prm", model=str(folder), backend="torch"), ScorerResources()
    )
    full = cards.PATHS[0]
    (parent,) = asyncio.run(scorer.score(PROBLEM, [Candidate("r.0", "", full[:2], None, False)]))
    (child,) = asyncio.run(scorer.score(PROBLEM, [Candidate("r.0.0", "", full, None, True)]))
    assert scorer.stats.steps_scored == 4 and scorer.stats.steps_reused == 2
    assert child.step_values[:2] == parent.step_values
    other = Problem(id="q", question="Another question?")
    (elsewhere,) = asyncio.run(scorer.score(other, [Candidate("s.0", "", full[:2], None, False)]))
    assert scorer.stats.steps_scored == 6  # the key includes the question
    assert elsewhere.step_values != parent.step_values


def test_pooled_rows_map_to_positions_for_all_step_and_classify_pooling() -> None:
    import numpy as np

    from branchwise.rewards.pooling import rows_at

    ids = [5, 9, 7, 9, 3]
    every = np.arange(10.0).reshape(5, 2)
    assert rows_at(every, ids, [1, 3], None).tolist() == [[2, 3], [6, 7]]
    tags_only = np.array([[0.0, 1.0], [2.0, 3.0]])  # STEP pooling: rows at the tag id 9
    assert rows_at(tags_only, ids, [3], 9).tolist() == [[2, 3]]
    with pytest.raises(ValueError, match="not step tags"):
        rows_at(tags_only, ids, [2], 9)
    assert rows_at(np.array([1.5]), ids, [4], None).tolist() == [[1.5]]
    with pytest.raises(ValueError, match="last token"):
        rows_at(np.array([1.5]), ids, [3], None)
    with pytest.raises(ValueError, match="3 rows for 5 tokens"):
        rows_at(np.zeros((3, 2)), ids, [1], None)


def test_an_evicted_early_step_is_rescored_without_losing_the_later_ones() -> None:
    from tests.unit.test_reward_models import FakeBackend, cand, expected, prm

    scorer = prm(FakeBackend())
    steps = ("1+1=2\n", "2+2=4\n", "4+4=8\n")
    asyncio.run(scorer.score(PROBLEM, [cand(*steps)]))
    scorer._cache.popitem(last=False)  # the first step's prefix leaves the cache
    (score,) = asyncio.run(scorer.score(PROBLEM, [cand(*steps)]))
    assert score.step_values == pytest.approx(expected(steps))

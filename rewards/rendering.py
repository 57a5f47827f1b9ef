"""Rendering a path into a reward model's input, per format (pure: no model, no tokenizer).

A :class:`Pieces` input is tokenized piece by piece (a head text, then each step, then the
step tag's last token id), as cards that build ids by concatenation do. A :class:`WholeText`
input is one string tokenized whole, as cards that tokenize a rendered string do; it carries
character offsets and the model is read at the last token of ``text[:offset]`` (see
``rewards.inputs`` for how offsets become token positions, and the check that they agree).
The chat template is the caller's (``chat``): the RM's own from its tokenizer files, or one
given in the recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

from branchwise.rewards.formats import RewardFormat

Message = dict[str, str]


class ChatRenderer(Protocol):
    """A chat template bound to a tokenizer's special tokens."""

    def __call__(self, messages: list[Message], *, add_generation_prompt: bool) -> str: ...


@dataclass(frozen=True)
class Pieces:
    """Ids = encode(head) + for each step: encode(step) + last id of encode(tag)."""

    head: str
    head_special: bool
    steps: tuple[str, ...]
    tag: str


@dataclass(frozen=True)
class WholeText:
    """Ids = encode(text); one read at the last token of ``text[:o]`` for each ``o`` in reads."""

    text: str
    reads: tuple[int, ...]
    special: bool


Rendered = Pieces | WholeText


@dataclass(frozen=True)
class RenderOptions:
    """What a recipe may change about a format's input."""

    step_tag: str
    system_prompt: str | None
    answer: str


def render(
    fmt: RewardFormat,
    options: RenderOptions,
    *,
    context: str,
    steps: Sequence[str],
    chat: ChatRenderer | None = None,
    bos: str | None = None,
) -> Rendered:
    """The input ``fmt`` reads for a path; ``context`` is the question or the policy prompt."""
    tag = options.step_tag
    parts = tuple(s.strip() for s in steps) if fmt.strip_steps else tuple(steps)
    if fmt.layout == "pieces":
        if fmt.context == "prompt":
            return Pieces(head=context, head_special=True, steps=parts, tag=tag)
        if bos is None:
            raise ValueError(
                f"format {fmt.name!r} starts with the bos token; the tokenizer has none"
            )
        return Pieces(head=bos + context + "\n", head_special=False, steps=parts, tag=tag)
    if fmt.layout == "tagged_text":
        body = "\n".join(step + tag for step in parts)
        head = context + " "
        ends = accumulate(len(step) + len(tag) + 1 for step in parts)
        return WholeText(head + body, tuple(len(head) + end - 1 for end in ends), special=True)
    if chat is None:
        raise ValueError(f"format {fmt.name!r} needs a chat template")
    system = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
    if fmt.layout == "chat_tagged":
        content = "".join(step + tag for step in parts)
        text = _chat(chat, [*system, _user(context), _assistant(content)])
        start = text.rfind(content)
        if start < 0:
            raise ValueError(f"the chat template changed the assistant turn {content[:60]!r}")
        ends = accumulate(len(step) + len(tag) for step in parts)
        return WholeText(text, tuple(start + end for end in ends), special=False)
    if fmt.layout == "chat_response":
        response = "".join(steps).strip() if fmt.strip_steps else "".join(steps)
        text = _chat(chat, [*system, _user(context), _assistant(response)])
        return WholeText(text, (len(text),), special=False)
    return _turns(chat, system, context, parts, options.answer)


def _turns(
    chat: ChatRenderer, system: list[Message], question: str, steps: tuple[str, ...], answer: str
) -> WholeText:
    """Each step a user turn answered by ``answer``; read where the answer is predicted."""
    messages = list(system)
    for i, step in enumerate(steps):
        messages += [_user(f"{question} {step}" if i == 0 else step), _assistant(answer)]
    text = _chat(chat, messages)
    reads = []
    for i in range(len(steps)):
        prefix = chat(messages[: len(system) + 2 * i + 1], add_generation_prompt=True)
        if not text.startswith(prefix) or not text[len(prefix) :].startswith(answer):
            raise ValueError(
                "the chat template does not render a conversation's turns as a prefix of it "
                f"(turn {i}), so the position of the answer {answer!r} is unknown"
            )
        reads.append(len(prefix))
    return WholeText(text, tuple(reads), special=False)


def _chat(chat: ChatRenderer, messages: list[Message]) -> str:
    return chat(messages, add_generation_prompt=False)


def _user(content: str) -> Message:
    return {"role": "user", "content": content}


def _assistant(content: str) -> Message:
    return {"role": "assistant", "content": content}

"""How a problem becomes the prompt's token ids: a plain template or the model's chat template.

A prompt is rendered and tokenized **once per problem**; every path of the search grows from
those token ids by token ids, never by re-rendering or re-tokenizing text. Chat templates are
unsafe to re-render mid-answer (Llama 3 trims the content, R1-style templates drop reasoning),
and a re-tokenized prefix can differ from the ids the model actually produced, which also
misses the prefix cache.

- ``plain``: ``template`` with ``{question}`` filled in, tokenized with the tokenizer's own
  special tokens (a base model's BOS).
- ``chat``: messages (optional system prompt, optional few-shot turns, the question) rendered
  with the model's chat template from its tokenizer files, or with ``chat_template`` from the
  recipe, with the generation prompt; the rendered text already holds every special token,
  so it is tokenized without adding more.

A prompt variant (:func:`render_variant`, DivSampling) is another rendering of the same
question, used only as the prompt of whole-solution samples that nothing extends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from branchwise.core.port import PromptVariant


class FewShotExample(BaseModel):
    """One worked example shown before the question, as a user turn and an assistant turn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1, description="The example's question (user turn).")
    answer: str = Field(min_length=1, description="Its worked answer (assistant turn).")


class PromptSpec(BaseModel):
    """How a recipe turns a problem into a prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    style: Literal["plain", "chat"] = Field(
        "plain",
        description="plain: fill `template` (base models); chat: the model's chat template.",
    )
    template: str = Field(
        "{question}\n", description="style=plain: the prompt text; `{question}` is filled in."
    )
    system: str | None = Field(None, description="style=chat: the system prompt, if any.")
    few_shot: tuple[FewShotExample, ...] = Field(
        (), description="style=chat: worked examples, each a user and an assistant turn."
    )
    chat_template: str | None = Field(
        None,
        description="style=chat: a Jinja chat template used instead of the model's own "
        "(inline text, or a file path relative to the recipe ending in .jinja).",
    )

    @model_validator(mode="after")
    def _check(self) -> PromptSpec:
        if self.style == "plain":
            if "{question}" not in self.template:
                raise ValueError("template: must contain {question}")
            if self.system is not None or self.few_shot or self.chat_template is not None:
                raise ValueError(
                    "system, few_shot and chat_template need style: chat "
                    "(style: plain fills `template` only)"
                )
        return self

    def messages(self, question: str) -> list[ChatMessage]:
        """The chat turns for one question (style=chat)."""
        turns: list[ChatMessage] = []
        if self.system is not None:
            turns.append(ChatMessage("system", self.system))
        for example in self.few_shot:
            turns.append(ChatMessage("user", example.question))
            turns.append(ChatMessage("assistant", example.answer))
        turns.append(ChatMessage("user", question))
        return turns

    def resolved_chat_template(self, base_dir: Path) -> str | None:
        """The recipe's chat template text (read from its file when it names one)."""
        value = self.chat_template
        if value is None or not value.strip().endswith(".jinja") or "\n" in value:
            return value
        path = Path(value)
        path = path if path.is_absolute() else base_dir / path
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"prompt.chat_template: cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"]
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt as the engine will see it: the text (for traces and scorers) and its ids."""

    text: str
    token_ids: tuple[int, ...]


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A ChatML template (Qwen's turn format) for engines that have no tokenizer files."""


def render_chat_template(
    template: str, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
) -> str:
    """Render a Jinja chat template in a sandbox, as tokenizers do (for tokenizer-less engines)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=[m.as_dict() for m in messages], add_generation_prompt=add_generation_prompt
    )


async def render_prompt(
    spec: PromptSpec, question: str, engine: PromptEngine, base_dir: Path
) -> RenderedPrompt:
    """The problem's prompt text and token ids, rendered once for the whole search."""
    if spec.style == "plain":
        text = spec.template.replace("{question}", question)
        return RenderedPrompt(text, await engine.tokenize(text))
    return await engine.tokenize_chat(
        spec.messages(question), chat_template=spec.resolved_chat_template(base_dir)
    )


async def render_variant(
    spec: PromptSpec,
    question: str,
    variant: PromptVariant,
    engine: PromptEngine,
    base_dir: Path,
) -> RenderedPrompt:
    """The problem's prompt with a variant's text added (DivSampling's perturbations).

    ``variant.question`` follows the question after a blank line. ``variant.system`` goes
    before the recipe's system prompt (which keeps the last word on the answer format), or
    becomes the system prompt; with a plain template it comes before the template's text.
    """
    asked = f"{question}\n\n{variant.question}" if variant.question else question
    if spec.style == "plain":
        text = spec.template.replace("{question}", asked)
        if variant.system:
            text = f"{variant.system}\n\n{text}"
        return RenderedPrompt(text, await engine.tokenize(text))
    system = "\n\n".join(part for part in (variant.system, spec.system) if part) or None
    varied = spec.model_copy(update={"system": system})
    return await engine.tokenize_chat(
        varied.messages(asked), chat_template=spec.resolved_chat_template(base_dir)
    )


def conversation_messages(
    spec: PromptSpec, conversation: Sequence[ChatMessage]
) -> list[ChatMessage]:
    """A client's conversation inside the recipe's chat prompt (style=chat).

    One system turn first: the recipe's ``system`` prompt, then the conversation's own system
    turns, joined by a blank line. The recipe's instruction comes first and is never dropped,
    since answer extraction and scorers rely on the format it asks for; many chat templates
    accept a single leading system turn only. Then the recipe's few-shot turns, then the
    conversation's user and assistant turns in order.
    """
    systems = [spec.system] if spec.system is not None else []
    systems += [m.content for m in conversation if m.role == "system"]
    turns = [ChatMessage("system", "\n\n".join(systems))] if systems else []
    for example in spec.few_shot:
        turns.append(ChatMessage("user", example.question))
        turns.append(ChatMessage("assistant", example.answer))
    turns += [m for m in conversation if m.role != "system"]
    return turns


async def render_conversation(
    spec: PromptSpec, conversation: Sequence[ChatMessage], engine: PromptEngine, base_dir: Path
) -> RenderedPrompt:
    """The prompt for a whole conversation that ends with a user turn.

    ``chat``: :func:`conversation_messages` through the chat template. ``plain``: the template
    has room for one question, so the last user turn is the question and the rest is unused.
    """
    if not conversation or conversation[-1].role != "user":
        raise ValueError("a conversation must end with a user turn")
    if spec.style == "plain":
        return await render_prompt(spec, conversation[-1].content, engine, base_dir)
    return await engine.tokenize_chat(
        conversation_messages(spec, conversation),
        chat_template=spec.resolved_chat_template(base_dir),
    )


class PromptEngine(Protocol):
    """What rendering a prompt needs from an engine."""

    async def tokenize(self, text: str) -> tuple[int, ...]: ...

    async def tokenize_chat(
        self, messages: Sequence[ChatMessage], *, chat_template: str | None = None
    ) -> RenderedPrompt: ...

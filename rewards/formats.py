"""Reward-model formats as data: how a path becomes the model's input, and where it is read.

Real reward models differ in what they read, not in how they are served. Each format below is
one frozen :class:`RewardFormat` (no class per model): the input layout, the text that tags a
step, the vocabulary tokens whose logits are the classes (causal LMs), the head's weight
names, which class is the score and with which activation, and the backends that can serve it
correctly. Sources are the model cards named in ``card``.

========================  ===========================  ==========================================
format                    model                        read
========================  ===========================  ==========================================
``qwen_prm``              Qwen2ForProcessRewardModel   softmax(2)[1] at each ``<extra_0>``
``shepherd``              causal LM (Math-Shepherd)    softmax(logit ``+``, ``-``)[0] at ``" ки"``
``rlhflow``               causal LM (Llama 3.1 chat)   softmax(logit ``+``, ``-``)[0] before ``+``
``value_head``            Qwen2ForPrmModel (Skywork)   sigmoid(v_head) at each step's last token
``token_classify``        *ForTokenClassification      softmax(2)[1] at each step's last token
``sequence_classify``     *ForSequenceClassification   raw logit at the last token (ORM)
========================  ===========================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from branchwise.core.reasoning import Reads
from branchwise.rewards.pooling import Activation

Layout = Literal["pieces", "chat_tagged", "tagged_text", "chat_turns", "chat_response"]
Backend = Literal["vllm", "http", "torch"]
VLLMTask = Literal["token_classify", "classify"]

QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
ALL_BACKENDS: frozenset[Backend] = frozenset({"vllm", "http", "torch"})


@dataclass(frozen=True)
class RewardFormat:
    """How one family of reward models reads a solution (see ``rewards.rendering``)."""

    name: str
    card: str
    """The model card or code this reading follows."""
    layout: Layout
    """pieces: a head text then each step tokenized on its own (the ids are their concatenation);
    chat_tagged: chat template, assistant turn = steps each followed by the tag;
    tagged_text: ``question + " " + "\\n".join(step + tag)``, tokenized whole;
    chat_turns: each step a user turn answered by the assistant with ``answer``;
    chat_response: chat template, user = question, assistant = the whole solution."""
    context: Literal["prompt", "question"]
    """prompt: the policy's rendered prompt starts the input (today's testbed PRM);
    question: the problem's question (pieces: ``bos + question + "\\n"``)."""
    head: tuple[str, ...]
    """Weight names of the head's linear layers (ReLU between them), as in the checkpoint."""
    label: int
    """Column of the (activated) classes that is the score."""
    activation: Activation
    step_tag: str = ""
    """Text after each step; read at its last token (pieces: appended as its last token id)."""
    label_tokens: tuple[str, ...] = ()
    """Causal LMs: the vocabulary tokens whose logits are the classes, e.g. ("+", "-")."""
    answer: str = ""
    """chat_turns: the assistant's reply to each step; read where it is predicted."""
    system_prompt: str | None = None
    """Default system message for chat layouts (None: none is sent)."""
    strip_steps: bool = True
    """Trim each step's whitespace and delimiter, as the card's inputs have none."""
    per_step: bool = True
    """One value per step (a PRM); False: one value per path (an ORM)."""
    backends: frozenset[Backend] = ALL_BACKENDS
    vllm_task: VLLMTask = "token_classify"
    step_pooling: bool = False
    """vLLM pools only the rows at the step tag's id (STEP pooling, ``step_tag_id``)."""
    why_not: str = ""
    """Why the other backends cannot serve it (the error a recipe gets)."""
    reads: Reads | None = None
    """On a reasoning model's paths: the thinking's steps or the answer after the end tag
    (None: a PRM reads the thinking, an ORM the answer)."""

    @property
    def default_reads(self) -> Reads:
        if self.reads is not None:
            return self.reads
        return "thinking" if self.per_step else "answer"


FORMATS: dict[str, RewardFormat] = {
    f.name: f
    for f in (
        RewardFormat(
            name="qwen_prm",
            context="question",
            card="Qwen/Qwen2.5-Math-PRM-7B",
            layout="chat_tagged",
            head=("score.0", "score.2"),
            label=1,
            activation="softmax",
            step_tag="<extra_0>",
            system_prompt=QWEN_MATH_SYSTEM,
            step_pooling=True,
        ),
        RewardFormat(
            name="shepherd",
            context="question",
            card="peiyi9979/math-shepherd-mistral-7b-prm",
            layout="tagged_text",
            head=("lm_head",),
            label=0,
            activation="softmax",
            step_tag=" ки",
            label_tokens=("+", "-"),
            backends=frozenset({"torch"}),
            why_not="vLLM's STEP pooling with returned_token_ids selects hidden-state columns, "
            "not the vocabulary logits of '+'/'-'",
        ),
        RewardFormat(
            name="rlhflow",
            context="question",
            card="RLHFlow/Llama3.1-8B-PRM-Deepseek-Data",
            layout="chat_turns",
            head=("lm_head",),
            label=0,
            activation="softmax",
            label_tokens=("+", "-"),
            answer="+",
            backends=frozenset({"torch"}),
            why_not="vLLM's pooling runner gives no vocabulary logits of a causal LM "
            "(returned_token_ids selects hidden-state columns)",
        ),
        # The Skywork card splits the response at every "\n"; here a step is the search's step
        # (stripped), so a multi-line step is read once, at its end.
        RewardFormat(
            name="value_head",
            context="question",
            card="Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B",
            layout="pieces",
            head=("v_head.summary",),
            label=0,
            activation="sigmoid",
            step_tag="\n",
            backends=frozenset({"torch"}),
            why_not="vLLM has no Qwen2ForPrmModel (value-head) class",
        ),
        # Tokenized piece by piece (prompt, then each step): the testbed PRM's training input.
        RewardFormat(
            name="token_classify",
            context="prompt",
            card="Branchwise testbed PRM (LlamaForTokenClassification)",
            layout="pieces",
            head=("score",),
            label=1,
            activation="softmax",
            strip_steps=False,
        ),
        RewardFormat(
            name="sequence_classify",
            context="question",
            card="Skywork/Skywork-Reward-V2-Qwen3-8B",
            layout="chat_response",
            head=("score",),
            label=0,
            activation="none",
            per_step=False,
            vllm_task="classify",
        ),
    )
}
FormatName = Literal[
    "qwen_prm", "shepherd", "rlhflow", "value_head", "token_classify", "sequence_classify"
]


def get_format(name: str) -> RewardFormat:
    """The format called ``name``; a clear error listing the known ones otherwise."""
    if name not in FORMATS:
        raise ValueError(f"format: unknown {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def check_backend(fmt: RewardFormat, backend: str) -> None:
    """Raise a one-line error when ``backend`` cannot serve ``fmt``, naming the one that can."""
    if backend not in fmt.backends:
        able = " or ".join(sorted(fmt.backends))
        raise ValueError(
            f"backend: {backend!r} cannot serve format {fmt.name!r} ({fmt.why_not}); "
            f"use backend: {able}"
        )

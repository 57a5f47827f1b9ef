"""The recipe entry of a reward model (``kind: prm`` / ``kind: orm``): format, backend, speed.

Fields a format decides (``label``, ``activation``, ``step_tag``, ``label_tokens``,
``system_prompt``, ``answer``) default to the format's values and are filled in at validation,
so a loaded config states the reading it uses (e.g. ``activation: none`` for a
``sequence_classify`` ORM: the raw reward, not vLLM's default sigmoid).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from branchwise.core.cpu_layout import CpuLayout
from branchwise.core.reasoning import Reads
from branchwise.core.scorers import ScorerConfig
from branchwise.core.values import StepAggregation
from branchwise.rewards.formats import FormatName, check_backend, get_format
from branchwise.rewards.pooling import Activation

CHAT_LAYOUTS = frozenset({"chat_tagged", "chat_turns", "chat_response"})


class RewardModelConfig(ScorerConfig):
    # the backends give the same scores (within 1e-4, tested); the rest is speed
    plumbing: ClassVar[frozenset[str]] = frozenset(
        {"backend", "base_url", "tokenizer", "max_batch", "max_wait_ms", "timeout_seconds",
         "cache_steps", "gpu_memory_utilization", "threads", "cpu_layout"}
    )  # fmt: skip
    format: FormatName = Field(
        "token_classify",
        description="How the model reads a path: qwen_prm | shepherd | rlhflow | value_head | "
        "token_classify (PRMs) | sequence_classify (ORMs); see rewards.formats.",
    )
    backend: Literal["vllm", "http", "torch"] = Field(
        "vllm",
        description="vllm: in-process pooling engine; http: a vLLM /pooling server; "
        "torch: transformers in this process. Not every format runs on every backend.",
    )
    model: str = Field(description="Model folder (relative to the recipe), or served name (http).")
    base_url: str | None = Field(None, description="Server root for backend=http.")
    tokenizer: str | None = Field(
        None,
        description="backend=http: tokenizer folder to encode (and render chat templates) with "
        "locally instead of asking the server's /tokenize (the served model's tokenizer).",
    )
    label: int = Field(
        1, ge=0, description="Class whose (activated) value is the score (omit: the format's)."
    )
    activation: Activation = Field(
        "softmax",
        description="softmax | sigmoid | none, applied to the class logits (omit: the format's; "
        "sequence_classify: none, the raw reward).",
    )
    step_tag: str = Field("", description="Text after each step (omit: the format's).")
    label_tokens: tuple[str, ...] = Field(
        (), description="Causal-LM formats: the tokens whose logits are the classes (+, -)."
    )
    answer: str = Field("", description="rlhflow: the assistant's reply to each step (+).")
    system_prompt: str | None = Field(
        None, description="Chat formats: the system message (omit: the format's; null: none)."
    )
    chat_template: str | None = Field(
        None,
        description="Chat formats: a Jinja template (inline, or a file relative to the recipe) "
        "instead of the one in the RM's tokenizer files.",
    )
    aggregation: StepAggregation = Field(
        StepAggregation(), description="Step values -> Score.value (PRM)."
    )
    reads: Reads = Field(
        "thinking",
        description="On a reasoning model's paths (the recipe's `reasoning`): thinking (the "
        "steps before the end tag) | answer (after it) | all (omit: the format's; PRMs read "
        "the thinking, ORMs the answer).",
    )
    max_batch: int = Field(64, ge=1, description="Most sequences per model call.")
    max_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill up.")
    timeout_seconds: float = Field(120.0, gt=0, description="Per-node limit; then it fails.")
    cache_steps: int = Field(200_000, ge=0, description="Step-prefix values kept (0: none).")
    dtype: str = Field("float32", description="Weights dtype (vllm, torch).")
    max_model_len: int | None = Field(None, ge=16, description="Context cap (vllm).")
    gpu_memory_utilization: float = Field(
        0.1, gt=0, le=1, description="Memory share for the pooling engine's cache (vllm)."
    )
    threads: int | None = Field(None, ge=1, description="torch threads (torch).")
    cpu_layout: CpuLayout = Field(
        "auto",
        description="vLLM's processes on a CPU machine (vllm), as the engine's `cpu_layout`: "
        "auto | small-cpu | stock.",
    )

    @model_validator(mode="before")
    @classmethod
    def _format_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fmt = get_format(str(data.get("format", "token_classify")))
        defaults = {
            "label": fmt.label,
            "activation": fmt.activation,
            "step_tag": fmt.step_tag,
            "label_tokens": fmt.label_tokens,
            "answer": fmt.answer,
            "system_prompt": fmt.system_prompt,
            "reads": fmt.default_reads,
        }
        merged = {**defaults, **data}
        for key, value in defaults.items():  # null means "the format's", but for system_prompt
            if merged[key] is None and key != "system_prompt":
                merged[key] = value
        return merged

    @model_validator(mode="after")
    def _check(self) -> RewardModelConfig:
        fmt = get_format(self.format)
        if self.backend == "http" and not self.base_url:
            raise ValueError("base_url: required when backend is 'http'")
        check_backend(fmt, self.backend)
        if self.kind == "prm" and not fmt.per_step:
            raise ValueError(f"format: {self.format!r} gives one score per path; use kind: orm")
        chat = fmt.layout in CHAT_LAYOUTS
        if not chat and (self.chat_template is not None or self.system_prompt is not None):
            raise ValueError(f"chat_template/system_prompt: format {self.format!r} has no chat")
        if chat and self.backend == "http" and self.tokenizer is None:
            raise ValueError(
                f"tokenizer: format {self.format!r} renders a chat template; backend http needs "
                "the RM's tokenizer folder"
            )
        if len(self.label_tokens) != len(fmt.label_tokens):
            raise ValueError(
                f"label_tokens: format {self.format!r} takes {len(fmt.label_tokens)}, "
                f"got {self.label_tokens!r}"
            )
        classes = len(self.label_tokens)
        if classes and self.label >= classes:
            raise ValueError(f"label: {self.label} but only {classes} label_tokens")
        if fmt.step_tag and not self.step_tag:
            raise ValueError(f"step_tag: format {self.format!r} needs one")
        return self

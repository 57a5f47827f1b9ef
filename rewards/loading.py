"""Where a reward model's parts come from: its backend, tokenizer folder and chat template."""

from __future__ import annotations

from typing import Any

from branchwise.core.scorers import ScorerResources
from branchwise.rewards.formats import get_format
from branchwise.rewards.pooling import TokenScoreBackend
from branchwise.rewards.rendering import ChatRenderer, Message
from branchwise.rewards.rm_config import RewardModelConfig


def _local(path: str, resources: ScorerResources) -> str:
    local = resources.base_dir / path
    return str(local.resolve()) if local.exists() else path


def build_backend(config: RewardModelConfig, resources: ScorerResources) -> TokenScoreBackend:
    """The backend a config names, set up for its format; heavy imports on first use."""
    fmt = get_format(config.format)
    model = config.model if config.backend == "http" else _local(config.model, resources)
    step_tag = config.step_tag if fmt.step_pooling else None
    if config.backend == "torch":
        from branchwise.rewards.torch_pooling import TorchTokenScores

        return TorchTokenScores(
            model,
            head=fmt.head,
            label_tokens=config.label_tokens,
            dtype=config.dtype,
            threads=config.threads,
        )
    if config.backend == "http":
        from branchwise.rewards.http_pooling import HTTPTokenScores

        assert config.base_url is not None
        tokenizer = None if config.tokenizer is None else _local(config.tokenizer, resources)
        return HTTPTokenScores(
            config.base_url,
            model,
            timeout=config.timeout_seconds,
            max_length=config.max_model_len,
            tokenizer=tokenizer,
            task=fmt.vllm_task,
            step_tag=step_tag,
        )
    from branchwise.rewards.vllm_pooling import VLLMTokenScores

    return VLLMTokenScores(
        model,
        dtype=config.dtype,
        max_model_len=config.max_model_len,
        gpu_memory_utilization=config.gpu_memory_utilization,
        cpu_layout=config.cpu_layout,
        task=fmt.vllm_task,
        step_tag=step_tag,
    )


def tokenizer_folder(config: RewardModelConfig, resources: ScorerResources) -> str:
    """The RM's tokenizer files: the model folder, or ``tokenizer`` for a server."""
    if config.backend == "http":
        if config.tokenizer is None:
            raise ValueError("tokenizer: this format needs the RM's tokenizer folder over http")
        return _local(config.tokenizer, resources)
    return _local(config.model, resources)


def chat_template(config: RewardModelConfig, resources: ScorerResources) -> str | None:
    """The recipe's template (a file relative to the recipe, or inline Jinja), if any."""
    if config.chat_template is None:
        return None
    path = resources.base_dir / config.chat_template
    if "{" not in config.chat_template and path.is_file():
        return path.read_text()
    return config.chat_template


def load_chat(folder: str, template: str | None) -> tuple[ChatRenderer | None, str | None]:
    """A renderer for the tokenizer's chat template (or ``template``), and its bos token."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    bos = tokenizer.bos_token
    if template is None and not getattr(tokenizer, "chat_template", None):
        return None, bos

    def chat(messages: list[Message], *, add_generation_prompt: bool) -> str:
        text = tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=template,
        )
        return str(text)

    return chat, bos

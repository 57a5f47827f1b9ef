"""The limits a strategy server sets on every request (``branchwise serve`` flags)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerLimits(BaseModel):
    """What one request may ask for and how much the server takes on at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body; a larger one is a 413."
    )
    max_concurrency: int = Field(
        64, ge=1, description="Searches running at once, all models together; past it a 429."
    )
    retry_after_seconds: int = Field(
        1, ge=1, description="The Retry-After a 429 carries, in seconds."
    )
    max_tokens: int = Field(
        4096, ge=1, description="Most tokens per sample a request may ask for (`max_tokens`)."
    )
    max_prompt_tokens: int = Field(
        32_768,
        ge=1,
        description="Longest rendered prompt a request may send, in tokens; a longer one is a "
        "400 naming `messages` (or `prompt`).",
    )
    max_generated_tokens: int = Field(
        65_536,
        ge=1,
        description="Per-request cap on the search's generated tokens (budget): a request may "
        "not ask for more, and a recipe budget that is unlimited or larger is cut to it.",
    )
    max_seconds: float = Field(
        300.0,
        gt=0,
        description="Per-request cap on the search's wall-clock seconds (budget), as above.",
    )
    max_thinking_tokens: int = Field(
        32_768,
        ge=1,
        description="Per-request cap on a reasoning model's thinking budget per path "
        "(`max_thinking_tokens`, `min_thinking_tokens`); a recipe setting more is cut to it.",
    )
    progress_interval: float = Field(
        0.25, gt=0, description="Seconds between looks at the best answer so far (streaming)."
    )

"""What a request may say: the OpenAI fields the server honours, checked at the edge.

Honoured, within :class:`ServerLimits`:

- ``max_tokens`` (or ``max_completion_tokens``): tokens per sample, at most the server's cap;
- ``temperature`` (0 to 2) and ``top_p`` (above 0, at most 1): the recipe's sampling;
- ``seed``: the run seed every per-node seed derives from (same request, same seed, same
  search on a deterministic engine);
- ``budget`` (a Branchwise field; ``extra_body`` in the openai client): any of the recipe
  budget's fields (``max_generated_tokens``, ``max_seconds``, ``max_engine_calls``, ...);
  ``max_generated_tokens`` and ``max_seconds`` at most the server's caps;
- ``max_thinking_tokens``, ``min_thinking_tokens`` (Branchwise fields, also accepted in
  ``budget``): a reasoning model's thinking budget per path, at most the server's cap; only
  for recipes with a reasoning format;
- ``stream``, ``stream_options.include_usage``; ``user`` (accepted, unused).

Accepted only at their neutral value: ``n`` and ``best_of`` (1), ``presence_penalty`` and
``frequency_penalty`` (0), ``logprobs`` and ``echo`` (false). A ``null`` is the same as
leaving a field out. Anything else, or a value out of range, is a 400 naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from branchwise.orchestrator.ledger import Budget
from branchwise.orchestrator.prompting import ChatMessage
from branchwise.orchestrator.server.errors import ApiError, bad_field
from branchwise.orchestrator.server.settings import ServerLimits

Endpoint = Literal["chat", "completions"]

_COMMON = {
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "seed",
    "budget", "user", "max_thinking_tokens", "min_thinking_tokens",
}  # fmt: skip
_CHAT = _COMMON | {"messages", "max_completion_tokens"}
_COMPLETIONS = _COMMON | {"prompt"}
_NEUTRAL: dict[str, Any] = {
    "n": 1,
    "best_of": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "echo": False,
}
_CAPPED_BUDGET = (
    "max_generated_tokens",
    "max_seconds",
    "max_thinking_tokens",
    "min_thinking_tokens",
)
_THINKING = ("max_thinking_tokens", "min_thinking_tokens")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class SearchRequest:
    """One validated request: which model, what to ask it, and what it overrides."""

    model: str
    conversation: tuple[ChatMessage, ...]
    """The chat turns; a completion's ``prompt`` is one user turn."""
    stream: bool = False
    include_usage: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)
    """Overrides of the recipe's sampling (``max_tokens``, ``temperature``, ``top_p``)."""
    seed: int | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    """Overrides of the recipe's budget, already checked against the server's caps."""

    @property
    def question(self) -> str:
        return self.conversation[-1].content


def parse_request(body: object, endpoint: Endpoint, limits: ServerLimits) -> SearchRequest:
    """Check a request body; raise :class:`ApiError` (400) naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_body")
    allowed = _CHAT if endpoint == "chat" else _COMPLETIONS
    present = {key: value for key, value in body.items() if value is not None}
    for key, value in present.items():
        if key in allowed:
            continue
        if key in _NEUTRAL:
            neutral = _NEUTRAL[key]
            if not _is_neutral(value, neutral):
                why = "; a search returns one answer" if key in ("n", "best_of") else ""
                raise bad_field(key, f"only {_json(neutral)} is supported{why}, got {_json(value)}")
            continue
        raise bad_field(key, "not supported by the strategy server")
    model = present.get("model")
    if not isinstance(model, str) or not model:
        raise bad_field("model", "required: the name of a served recipe (see /v1/models)")
    if endpoint == "chat":
        conversation = _messages(present.get("messages"))
    else:
        conversation = (ChatMessage("user", _prompt(present.get("prompt"))),)
    stream = present.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_field("stream", f"expected true or false, got {_json(stream)}")
    return SearchRequest(
        model=model,
        conversation=conversation,
        stream=stream,
        include_usage=_stream_options(present.get("stream_options"), stream),
        sampling=_sampling(present, limits),
        seed=_seed(present.get("seed")),
        budget=_budget(_with_thinking(present), limits),
    )


def _with_thinking(body: dict[str, Any]) -> object:
    """The ``budget`` object with the top-level thinking fields moved into it."""
    budget = body.get("budget")
    top = {key: body[key] for key in _THINKING if key in body}
    if not top:
        return budget
    if budget is not None and not isinstance(budget, dict):
        return budget  # refused by _budget, naming the field
    inside = budget or {}
    for key in top:
        if inside.get(key) is not None:
            raise bad_field(key, f"also given as budget.{key}; give it once")
    return {**inside, **top}


def _messages(value: object) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise bad_field("messages", "required: a non-empty list of {role, content}")
    turns = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad_field(where, "expected an object with role and content")
        extra = sorted(set(message) - {"role", "content", "name"})
        if extra:
            raise bad_field(f"{where}.{extra[0]}", "not supported by the strategy server")
        role = message.get("role")
        if role not in _ROLES:
            raise bad_field(f"{where}.role", f"expected one of {sorted(_ROLES)}, got {_json(role)}")
        turns.append(ChatMessage(_ROLES[role], _content(message.get("content"), where)))  # type: ignore[arg-type]
    if turns[-1].role != "user":
        raise bad_field(
            f"messages[{len(turns) - 1}].role",
            "the last message must be the user's: the search writes the assistant's answer",
        )
    return tuple(turns)


def _content(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_field(f"{where}.content[{index}]", "only text parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_field(f"{where}.content[{index}].text", "expected a string")
            parts.append(text)
        return "".join(parts)
    raise bad_field(f"{where}.content", "expected a string or a list of text parts")


def _prompt(value: object) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and value.strip():
        return value
    raise bad_field(
        "prompt",
        "expected one non-empty string (the question); token ids and batches "
        "of prompts are not supported",
    )


def _stream_options(value: object, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise bad_field("stream_options", "only allowed with stream: true")
    if not isinstance(value, dict):
        raise bad_field("stream_options", "expected an object")
    extra = sorted(set(value) - {"include_usage"})
    if extra:
        raise bad_field(f"stream_options.{extra[0]}", "not supported by the strategy server")
    include = value.get("include_usage", False)
    if not isinstance(include, bool):
        raise bad_field("stream_options.include_usage", "expected true or false")
    return include


def _sampling(body: dict[str, Any], limits: ServerLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tokens = {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body}
    if len(set(map(repr, tokens.values()))) > 1:
        raise bad_field("max_completion_tokens", "differs from max_tokens; give one of them")
    for key, value in tokens.items():
        if not _integer(value) or not 1 <= value <= limits.max_tokens:
            raise bad_field(
                key,
                f"expected an integer from 1 to {limits.max_tokens} (the server's "
                f"limit per sample), got {_json(value)}",
            )
        out["max_tokens"] = value
    if "temperature" in body:
        value = body["temperature"]
        if not _number(value) or not 0 <= value <= 2:
            raise bad_field("temperature", f"expected a number from 0 to 2, got {_json(value)}")
        out["temperature"] = float(value)
    if "top_p" in body:
        value = body["top_p"]
        if not _number(value) or not 0 < value <= 1:
            raise bad_field("top_p", f"expected a number above 0 and at most 1, got {_json(value)}")
        out["top_p"] = float(value)
    return out


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_field("seed", f"expected an integer, got {_json(value)}")
    return value


def _budget(value: object, limits: ServerLimits) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_field("budget", "expected an object of budget limits, e.g. "
                        '{"max_generated_tokens": 2048}')  # fmt: skip
    given = {key: item for key, item in value.items() if item is not None}
    try:
        Budget.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            known = ", ".join(Budget.model_fields)
            raise bad_field(f"budget.{name}", f"unknown budget field; known: {known}") from None
        raise bad_field(f"budget.{name}", f"{error['msg']} (got {_json(error['input'])})") from None
    for key in _CAPPED_BUDGET:
        cap = getattr(limits, key.replace("min_", "max_"))
        if key in given and given[key] > cap:
            raise bad_field(
                f"budget.{key}", f"at most {cap} (the server's per-request limit), got {given[key]}"
            )
    return given


def _is_neutral(value: object, neutral: object) -> bool:
    if isinstance(neutral, bool):
        return value is neutral
    return _number(value) and value == neutral


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _json(value: object) -> str:
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

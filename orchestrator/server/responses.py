"""Response bodies and stream chunks in OpenAI's shapes, plus Branchwise's own facts.

Every body carries OpenAI's ``usage`` (``prompt_tokens``: every prompt token the search sent
to the engine; ``completion_tokens``: every token it generated, on all paths, kept or not; both
with what its LLM scorers (judges, self-verification) spent on an engine;
``prompt_tokens_details.cached_tokens``: the prompt tokens served from the prefix cache) and a
``branchwise`` object: the trace id, the extracted answer, the node it came from, the
strategy, the search's whole usage (engine and scorer calls, nodes, aborted requests,
seconds), the strategy's details, the budget the search ran under and the search's
``warnings`` (``orchestrator.result_warnings``: why an answer is missing, say).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from branchwise.core.reasoning import ReasoningFormat, split_reasoning
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.server.protocol import Endpoint
from branchwise.orchestrator.server.search import BestSoFar


@dataclass(frozen=True)
class Reply:
    """What the response is about: one request's ids and how to label its chunks."""

    endpoint: Endpoint
    trace_id: str
    model: str
    strategy: str
    fingerprint: str
    budget: dict[str, Any]
    created: int
    reasoning: ReasoningFormat | None = None
    """The recipe's reasoning format: chat answers split the thinking off the content."""

    @classmethod
    def new(
        cls,
        endpoint: Endpoint,
        trace_id: str,
        model: str,
        strategy: str,
        fingerprint: str,
        budget: dict[str, Any],
        *,
        reasoning: ReasoningFormat | None = None,
    ) -> Reply:
        created = int(time.time())
        return cls(endpoint, trace_id, model, strategy, fingerprint, budget, created, reasoning)

    @property
    def id(self) -> str:
        return ("chatcmpl-" if self.endpoint == "chat" else "cmpl-") + self.trace_id

    def _head(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def body(self, result: ProblemResult) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        text, finish = answer_text(result)
        if self.endpoint == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if self.reasoning is not None:
                thinking, content = split_thinking(text, self.reasoning)
                message = {"role": "assistant", "content": content, "reasoning_content": thinking}
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "finish_reason": finish,
                "logprobs": None,
            }
            head = self._head("chat.completion")
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            head = self._head("text_completion")
        return {
            **head,
            "choices": [choice],
            "usage": openai_usage(result.usage),
            "branchwise": self.facts(result),
        }

    def facts(self, result: ProblemResult) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "answer": result.answer,
            "node_id": result.node_id,
            "strategy": self.strategy,
            "usage": dict(result.usage),
            "detail": jsonable(result.detail),
            "budget": self.budget,
            "warnings": [w.to_dict() for w in result.warnings],
        }

    # stream chunks -----------------------------------------------------------------------

    def chunk(
        self,
        delta: str | None = None,
        *,
        role: bool = False,
        finish: str | None = None,
        extra: dict[str, Any] | None = None,
        reasoning: str | None = None,
    ) -> dict[str, Any]:
        """One chunk; ``reasoning``: a reasoning delta (``reasoning_content``, chat only)."""
        if self.endpoint == "chat":
            content: dict[str, Any] = {}
            if role:
                content = {"role": "assistant", "content": ""}
            if reasoning is not None:
                content["reasoning_content"] = reasoning
            if delta is not None:
                content["content"] = delta
            choice: dict[str, Any] = {"index": 0, "delta": content}
            head = self._head("chat.completion.chunk")
        else:
            choice = {"index": 0, "text": delta or ""}
            head = self._head("text_completion")
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        out = {**head, "choices": [choice]}
        if extra is not None:
            out["branchwise"] = extra
        return out

    def progress(self, best: BestSoFar) -> dict[str, Any]:
        """A chunk with no content that carries the best answer so far (``branchwise``)."""
        return self.chunk(
            extra={
                "event": "progress",
                "trace_id": self.trace_id,
                "answer": best.answer,
                "node_id": best.node_id,
                "text": best.text,
                "generated_tokens": best.generated_tokens,
                "nodes": best.nodes,
            }
        )

    def final_chunks(self, result: ProblemResult, include_usage: bool) -> list[dict[str, Any]]:
        """The answer's text, the finish chunk (with the facts) and, if asked, the usage."""
        text, finish = answer_text(result)
        chunks = []
        if self.endpoint == "chat" and self.reasoning is not None:
            thinking, text = split_thinking(text, self.reasoning)
            if thinking:
                chunks.append(self.chunk(reasoning=thinking))
        if text:
            chunks.append(self.chunk(text))
        facts = {"event": "final", **self.facts(result)}
        chunks.append(self.chunk(finish=finish, extra=facts))
        if include_usage:
            head = self._head(
                "chat.completion.chunk" if self.endpoint == "chat" else "text_completion"
            )
            chunks.append({**head, "choices": [], "usage": openai_usage(result.usage)})
        return chunks


def answer_text(result: ProblemResult) -> tuple[str, str]:
    """The chosen path's text and OpenAI's finish reason for it.

    No path at all (the budget ran out first) is an empty text that finished by ``length``.
    """
    if result.node_id is None or result.graph is None:
        return "", "length"
    node = result.graph.node(result.node_id)
    finish = "length" if node.finish_reason == "length" else "stop"
    return result.graph.solution_text(result.node_id), finish


def split_thinking(text: str, fmt: ReasoningFormat) -> tuple[str, str]:
    """A chat answer's ``reasoning_content`` and ``content``, as vLLM's reasoning parsers
    give them: the thinking without its tags, and the text after the end tag (all of a text
    that never closed its thinking is thinking)."""
    split = split_reasoning(text, fmt)
    thinking = split.thinking.removesuffix(fmt.end) if split.closed else split.thinking
    stripped = thinking.lstrip()
    if stripped.startswith(fmt.start):
        thinking = stripped[len(fmt.start) :]
    return thinking, split.answer or ""


def openai_usage(usage: dict[str, float | int]) -> dict[str, Any]:
    """OpenAI's usage object: every token the search spent, its LLM scorers' (judges,
    self-verification) included; ``reasoning_tokens``: the generated tokens that thought."""

    def count(*keys: str) -> int:
        return sum(int(usage.get(key, 0)) for key in keys)

    prompt = count("prompt_tokens", "scorer_prompt_tokens")
    generated = count("generated_tokens", "scorer_generated_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
        "prompt_tokens_details": {
            "cached_tokens": count("cached_prompt_tokens", "scorer_cached_prompt_tokens")
        },
        "completion_tokens_details": {"reasoning_tokens": int(usage.get("thinking_tokens", 0))},
    }


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON types: strategy details may hold tuples, numpy numbers or
    infinite log-probabilities (written as null, which every JSON parser reads)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return jsonable(item())
    return str(value)


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()

"""Summaries of a run: accuracy, failures and token usage, from stored result records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def summarise(records: Sequence[dict[str, Any]]) -> str:
    """A short human-readable summary; every number is a sum over the records."""
    total = len(records)
    failed = sum(1 for r in records if r.get("error"))
    graded = [r for r in records if r.get("correct") is not None]
    correct = sum(1 for r in graded if r["correct"])
    usage: dict[str, float] = {}
    for record in records:
        for key, value in (record.get("usage") or {}).items():
            usage[key] = usage.get(key, 0) + value
    prompt = usage.get("prompt_tokens", 0)
    cached = usage.get("cached_prompt_tokens", 0)
    lines = [f"problems: {total}  failed: {failed}"]
    if graded:
        lines.append(f"accuracy: {correct}/{len(graded)} = {correct / len(graded):.3f}")
    lines.append(
        "tokens: generated={g} prompt={p} (cached {c}, {rate:.0%})  engine_calls={e}  "
        "scorer_calls={s}".format(
            g=int(usage.get("generated_tokens", 0)),
            p=int(prompt),
            c=int(cached),
            rate=(cached / prompt) if prompt else 0.0,
            e=int(usage.get("engine_calls", 0)),
            s=int(usage.get("scorer_calls", 0)),
        )
    )
    return "\n".join(lines)

"""Bounds a recipe must keep so that memory stays in check, checked when it is validated.

A search holds every sample it starts (a node, a request, its tokens), so a count is memory:
``strategy.n: 100000000000000000000`` once passed validation and grew ``eval`` to 15.8 GB
before the kernel killed it. Each rule names the field, its value and the limit it breaks:

- every whole-number field of the strategy is at most :data:`MAX_COUNT`;
- the samples a strategy starts side by side (the product of its width fields present, e.g.
  ``beam_width`` x ``expansions``) are at most :data:`MAX_COUNT` too;
- a budget of generated tokens fits the first round: each sample started at once needs at
  least one token, so a width above ``budget.max_generated_tokens`` can never be met (a
  budget below one whole completion is the ``validate`` check of
  :mod:`orchestrator.validation`, and a run says so when it shows; ``budget.max_nodes`` is
  left alone: it caps how many of the samples start, by design);
- ``sampling.max_tokens`` is at most :data:`MAX_TOKENS`, and within the engine's context
  (``engine.max_model_len``) where the recipe sets one.
"""

from __future__ import annotations

from typing import Any

MAX_COUNT = 65_536
"""Most samples, nodes or iterations one field may ask for (about 250 MB of search state on
the scripted engine, measured at 78 MB for n = 10,000)."""
MAX_TOKENS = 1 << 20
"""Most tokens one completion may ask for."""
WIDTH_FIELDS = (
    "n",
    "particles",
    "beam_width",
    "subtrees",
    "expansions",
    "expansion_width",
    "initial_paths",
    "initial",
    "parallel",
)
"""Strategy fields that count samples started side by side."""


def bound_errors(recipe: Any) -> list[str]:
    """Every bound ``recipe`` breaks, one sentence each (empty: it fits)."""
    errors: list[str] = []
    strategy = recipe.strategy
    counts = {
        name: value
        for name in type(strategy).model_fields
        if isinstance(value := getattr(strategy, name), int) and not isinstance(value, bool)
    }
    for name, value in counts.items():
        if value > MAX_COUNT:
            errors.append(
                f"strategy.{name}: {value} is more than {MAX_COUNT:,}, the most one search may "
                "hold (each sample or node is kept in memory)"
            )
    widths = {name: counts[name] for name in WIDTH_FIELDS if name in counts}
    side_by_side = 1
    for value in widths.values():
        side_by_side *= value
    if len(widths) > 1 and side_by_side > MAX_COUNT:
        product = " x ".join(f"{name} {value}" for name, value in widths.items())
        errors.append(
            f"strategy: {product} = {side_by_side:,} samples side by side, more than {MAX_COUNT:,}"
        )
    budget = recipe.budget
    tokens = budget.max_generated_tokens
    if tokens is not None and tokens >= recipe.sampling.max_tokens:
        for name, value in widths.items():
            if value > tokens:
                errors.append(
                    f"strategy.{name}: {value} samples at once cannot fit "
                    f"budget.max_generated_tokens {tokens} (each needs at least one)"
                )
    max_tokens = recipe.sampling.max_tokens
    if max_tokens > MAX_TOKENS:
        errors.append(f"sampling.max_tokens: {max_tokens} is more than {MAX_TOKENS:,}")
    context = getattr(recipe.engine, "max_model_len", None)
    if isinstance(context, int) and max_tokens >= context:
        errors.append(
            f"sampling.max_tokens: {max_tokens} does not fit engine.max_model_len {context} "
            "(the prompt needs room too)"
        )
    return errors

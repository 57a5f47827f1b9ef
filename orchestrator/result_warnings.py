"""What went wrong in a search that still returned: one rule, read by the API, CLI and server.

A search can finish without an error and still be useless: a scorer that failed on every node
(a missing model, a misread format), a budget that ran out before any path finished, paths that
finished without an answer the recipe's ``answer`` settings can read. Each is a
:class:`SearchWarning` on ``ProblemResult.warnings`` (set once, by ``Orchestrator.solve``), so
no caller has to re-derive it from the graph, and none can miss it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from branchwise.orchestrator.recipe import Recipe
from branchwise.orchestrator.results import ProblemResult, SearchWarning


def result_warnings(result: ProblemResult, recipe: Recipe) -> list[SearchWarning]:
    """The warnings of a finished search (none for a failed one: its ``error`` says it)."""
    if result.error is not None:
        return []
    found: list[SearchWarning] = []
    graph = result.graph
    pid = result.problem_id
    if graph is not None:
        scored: dict[str, list[str | None]] = {}
        for node in graph.nodes():
            for name, score in graph.state(node.id).scores.items():
                scored.setdefault(name, []).append(score.error if not score.ok else None)
        for name, errors in scored.items():
            if errors and all(e is not None for e in errors):
                found.append(
                    SearchWarning(
                        "scorer_failed",
                        f"scorer {name!r} failed on every node it scored ({len(errors)} in "
                        f"problem {pid}): {errors[0]}",
                        subject=name,
                    )
                )
        terminals = graph.terminals(include_pruned=True)
        unread = bool(terminals) and all(n.answer is None for n in terminals)
        cut = unread and all(n.finish_reason == "length" for n in terminals)
        if (not terminals and result.answer is None) or (cut and _budget_spent(result, recipe)):
            found.append(SearchWarning("budget_ran_out", _budget_message(result, recipe)))
        elif unread:
            spec = recipe.answer
            how = f"answer.method {spec.method}" + (
                f" with pattern {spec.pattern!r}" if spec.pattern else ""
            )
            found.append(
                SearchWarning(
                    "answer_unreadable",
                    f"none of the {len(terminals)} finished paths of problem {pid} had an "
                    f"answer ({how}); check the answer settings and sampling.max_tokens",
                )
            )
    if result.answer is None and not found:
        found.append(SearchWarning("no_answer", f"problem {pid}: the search chose no answer"))
    return found


def _budget_spent(result: ProblemResult, recipe: Recipe) -> bool:
    budget = recipe.budget.max_generated_tokens
    spent = int(result.usage.get("generated_tokens", 0))
    return budget is not None and (spent >= budget or budget < recipe.sampling.max_tokens)


def _budget_message(result: ProblemResult, recipe: Recipe) -> str:
    budget = recipe.budget.max_generated_tokens
    why = (
        f"budget.max_generated_tokens ({budget}) is less than one completion "
        f"(sampling.max_tokens {recipe.sampling.max_tokens})"
        if budget is not None and budget < recipe.sampling.max_tokens
        else "the budget ran out before any path reached an answer"
    )
    tokens = int(result.usage.get("generated_tokens", 0))
    return (
        f"problem {result.problem_id} ended before any path reached an answer "
        f"({tokens} tokens generated): {why}"
    )


def log_warnings(results: Iterable[ProblemResult], logger: logging.Logger) -> None:
    """Log each kind of warning once (its first message, and how many problems had it)."""
    first: dict[str, SearchWarning] = {}
    count: dict[str, int] = {}
    for result in results:
        for warning in result.warnings:
            first.setdefault(warning.key, warning)
            count[warning.key] = count.get(warning.key, 0) + 1
    for key, warning in first.items():
        more = f" (in {count[key]} problems)" if count[key] > 1 else ""
        logger.warning("%s%s", warning.message, more)


def failure_of(result: ProblemResult) -> str | None:
    """Why a search counts as failed for a caller that needs an answer, or None.

    An error, or no answer because a scorer failed everywhere (a misconfiguration, not an
    outcome of the search); a budget that ran out stays an answer-less result with a reason.
    """
    if result.error is not None:
        return result.error
    if result.answer is None:
        broken = [w for w in result.warnings if w.kind == "scorer_failed"]
        if broken:
            return f"no answer: {broken[0].message}"
    return None

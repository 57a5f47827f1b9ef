"""Answer equivalence: exact, normalised, or mathematical (through math-verify).

``math`` mode parses both answers with math-verify (LaTeX and plain expressions) and compares
them symbolically, so ``1/2``, ``0.5`` and ``\\frac{1}{2}`` agree. When either side does not
parse as mathematics it falls back to the normalised string comparison, so text answers still
work. math-verify bounds its own parsing and comparison with ``signal.alarm``, which only works
on the main thread; elsewhere (e.g. a scorer on a background event loop) the timeouts are off
and answers longer than ``max_chars`` are compared as strings only, which keeps sympy from
chewing on pathological input.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer, ScorerConfig, ScorerResources
from branchwise.verifiers.answers import normalise_answer

EquivalenceMode = Literal["exact", "normalised", "math"]


def answers_equivalent(
    answer: str | None,
    reference: str | None,
    mode: EquivalenceMode = "math",
    *,
    timeout_seconds: int = 5,
    max_chars: int = 400,
) -> bool:
    """Whether ``answer`` states the same value as ``reference``; None never matches."""
    if answer is None or reference is None:
        return False
    if mode == "exact":
        return answer.strip() == reference.strip()
    left, right = _normalise(answer), _normalise(reference)
    if left is not None and left == right:
        return True
    if mode == "normalised" or left is None or right is None:
        return False
    if max(len(left), len(right)) > max_chars:
        return False
    return _math_equal(left, right, timeout_seconds)


def _normalise(text: str) -> str | None:
    """The shared answer normalisation, plus case and inner whitespace folded."""
    value = normalise_answer(text)
    return " ".join(value.casefold().split()) if value is not None else None


def _math_equal(answer: str, reference: str, timeout_seconds: int) -> bool:
    from math_verify import parse, verify  # type: ignore[import-untyped]

    on_main = threading.current_thread() is threading.main_thread()
    timeout = timeout_seconds if on_main else None
    gold: list[Any] = parse(_as_math(reference), parsing_timeout=timeout)
    target: list[Any] = parse(_as_math(answer), parsing_timeout=timeout)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=timeout))


def _as_math(text: str) -> str:
    """Wrap a bare answer in ``$...$``: math-verify reads LaTeX only inside math delimiters,
    and without them reads ``(1, 2)`` as its last number."""
    if "$" not in text and not text.startswith(("\\(", "\\[")):
        return f"${text}$"
    return text


class AnswerEquivalenceConfig(ScorerConfig):
    mode: EquivalenceMode = Field(
        "math",
        description="exact: identical strings; normalised: after stripping decoration "
        "('1,000.' = '1000', case and spaces folded); math: normalised, else symbolic "
        "equality via math-verify.",
    )
    timeout_seconds: int = Field(
        5, ge=1, description="math-verify's parse/compare time limit (main thread only)."
    )
    max_chars: int = Field(400, ge=1, description="Longer answers skip the symbolic comparison.")


class AnswerEquivalence(Scorer[AnswerEquivalenceConfig]):
    """1.0 when the candidate's answer equals ``problem.answer`` under the configured mode.

    An oracle (it reads the reference), like :class:`verifiers.reference.ReferenceAnswer`:
    for grading and coverage, not for steering a search reported as fair. A candidate
    without an extracted answer scores 0.0 (it is a wrong answer, not a scorer failure).
    """

    config_model = AnswerEquivalenceConfig
    description = "Oracle: 1 if the answer equals the reference (exact / normalised / math)."
    needs_answer = True

    def __init__(self, config: AnswerEquivalenceConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        self.cfg = config

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        if problem.answer is None:
            raise ValueError(f"problem {problem.id} has no reference answer")
        out: list[Score] = []
        for c in candidates:
            try:
                same = answers_equivalent(
                    c.answer,
                    problem.answer,
                    self.cfg.mode,
                    timeout_seconds=self.cfg.timeout_seconds,
                    max_chars=self.cfg.max_chars,
                )
            except Exception as exc:  # math-verify time-outs and parser errors fail one node
                out.append(Score(value=None, error=f"{type(exc).__name__}: {exc}"))
                continue
            out.append(Score(value=1.0 if same else 0.0))
        return out

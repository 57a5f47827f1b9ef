"""Grading: whether a final answer counts as right, for the accuracy a run reports.

Three rules, chosen per recipe (``grading.method``):

- ``exact``: the answers are equal after the shared normalisation (``1,000.`` = ``1000``).
- ``numeric``: both read as numbers, compared exactly as fractions: ``$18`` = ``18``,
  ``1/2`` = ``0.5`` = ``\\frac{1}{2}``, ``5%`` = ``5``, ``1,000`` = ``1000``; answers that
  are not numbers fall back to ``exact``.
- ``math``: math-verify's symbolic comparison of LaTeX or plain expressions (MATH-style
  answers such as ``\\frac{\\sqrt{3}}{2}`` or ``(1, 2)``), after the checks above.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from branchwise.verifiers.answers import normalise_answer
from branchwise.verifiers.equivalence import answers_equivalent

GradingMethod = Literal["exact", "numeric", "math"]

_FRAC = re.compile(r"^(-?)\\[dt]?frac\{\s*(-?[\d.]+)\s*\}\{\s*(-?[\d.]+)\s*\}$")
_RATIO = re.compile(r"^(-?[\d.]+)\s*/\s*(-?[\d.]+)$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)$")
_DECORATION = ("\\$", "$", "\\%", "%", "\\!", "\\,", "{,}", ",")


class GradingSpec(BaseModel):
    """How reported accuracy decides that an answer matches the reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: GradingMethod = Field(
        "math",
        description="exact: normalised strings; numeric: as numbers ($18 = 18, 1/2 = 0.5); "
        "math: math-verify's symbolic equality (falls back to the others first).",
    )


def grade(answer: str | None, reference: str | None, spec: GradingSpec | None = None) -> bool:
    """Whether ``answer`` is right against ``reference``; a missing answer never is."""
    if answer is None or reference is None:
        return False
    method = (spec or GradingSpec()).method
    left, right = normalise_answer(answer), normalise_answer(reference)
    if left is not None and left == right:
        return True
    if left is None or right is None or method == "exact":
        return False
    a, b = parse_number(left), parse_number(right)
    if a is not None and b is not None:
        return a == b
    if method == "numeric":
        return False
    return answers_equivalent(left, right, "math")


def parse_number(text: str) -> Fraction | None:
    """The number an answer states (``$1,000``, ``5%``, ``3/4``, ``\\frac{1}{2}``, ``-0.5``)."""
    value = text.strip()
    if value.startswith("\\(") and value.endswith("\\)"):
        value = value[2:-2]
    for mark in _DECORATION:
        value = value.replace(mark, "")
    value = value.strip().rstrip(".").strip()
    if value.startswith("\\boxed{") and value.endswith("}"):
        value = value[len("\\boxed{") : -1].strip()
    frac = _FRAC.match(value)
    if frac:
        sign, top, bottom = frac.groups()
        return _ratio(sign + top, bottom)
    ratio = _RATIO.match(value)
    if ratio:
        return _ratio(*ratio.groups())
    if _DECIMAL.match(value):
        return Fraction(value)
    return None


def _ratio(top: str, bottom: str) -> Fraction | None:
    if not (_DECIMAL.match(top) and _DECIMAL.match(bottom)):
        return None
    denominator = Fraction(bottom)
    return Fraction(top) / denominator if denominator != 0 else None

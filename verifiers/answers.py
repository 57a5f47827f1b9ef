"""Final-answer extraction and light normalisation, shared by voting and grading."""

from __future__ import annotations

import re

from branchwise.core.answer_spec import AnswerSpec, ExtractionMethod

__all__ = ["AnswerSpec", "ExtractionMethod", "extract_answer", "normalise_answer"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# last_number also reads a fraction written with a slash ("3/4"), not just its denominator
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
_ANSWER_LINE = re.compile(r"(?im)^\s*(?:final\s+)?answer\s*[:=]\s*(.+?)\s*$")
_GSM8K = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)


def extract_answer(text: str, spec: AnswerSpec | None = None) -> str | None:
    """The normalised final answer in ``text``, or None when it has none."""
    spec = spec or AnswerSpec()
    raw: str | None
    if spec.method == "answer_line":
        matches = _ANSWER_LINE.findall(text)
        raw = matches[-1] if matches else None
    elif spec.method == "gsm8k":
        matches = _GSM8K.findall(text)
        raw = matches[-1] if matches else None
    elif spec.method == "boxed":
        raw = _last_boxed(text)
    elif spec.method == "last_number":
        numbers = _LAST_NUMBER.findall(text)
        raw = numbers[-1].replace(" ", "") if numbers else None
    else:
        if spec.pattern is None:
            raise ValueError("answer method 'regex' needs a pattern")
        found = re.search(spec.pattern, text)
        raw = found.group(1) if found else None
    return normalise_answer(raw) if raw is not None else None


def normalise_answer(raw: str) -> str | None:
    """Strip decoration so '1,000.' and '1000' vote together; None if nothing is left."""
    value = raw.strip().rstrip(".").strip()
    if value.startswith("$") and value.endswith("$") and len(value) > 1:
        value = value[1:-1].strip()
    for currency in ("\\$", "$"):  # "$18" and "\$18" state the number 18
        if value.startswith(currency) and _NUMBER.fullmatch(value[len(currency) :].strip()):
            value = value[len(currency) :].strip()
    if _NUMBER.fullmatch(value):
        value = value.replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        if value in {"-0", ""}:
            value = "0"
    return value or None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    begin = i
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[begin : i - 1] if depth == 0 else None

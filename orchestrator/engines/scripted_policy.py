"""The scripted engine's policies: what a scripted engine writes, and the protocols that let a
test policy expose its next-token distribution, sample token by token, or take code points.

The default, :class:`ReferencePolicy`, replays reference solutions with a set per-step error
rate, which gives search something real to find.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.code_book import Draws, RandomDraws

EOS = "\x00"
_ASSISTANT_TURN = "<|im_start|>assistant\n"


@dataclass(frozen=True)
class Continuation:
    """What the policy would write next: text (EOS marks the end) and per-char logprobs.

    ``top_logprobs`` (optional, one tuple per char) replaces the engine's synthetic top-k
    log-probabilities, so a test policy can make chosen positions confident or uncertain.
    """

    text: str
    logprobs: tuple[float, ...]
    top_logprobs: tuple[tuple[float, ...], ...] = ()
    top_chars: tuple[tuple[str, ...], ...] = ()
    """The characters of ``top_logprobs`` (a token-level policy names them; else synthetic)."""


class ScriptedPolicy(Protocol):
    def continue_text(self, prompt: str, rng: random.Random) -> Continuation: ...


@runtime_checkable
class NextTokenPolicy(Protocol):
    """A policy that knows its next-token distribution, so the engine scores given tokens
    exactly (``logprobs_of``)."""

    def next_token_logprobs(self, text: str) -> Mapping[str, float]:
        """log p of each possible next character after ``text`` (EOS included)."""
        ...


@runtime_checkable
class TokenSampling(Protocol):
    """A policy that samples character by character at a temperature (see scripted_tokens)."""

    def sample_at(
        self, prompt: str, rng: random.Random, temperature: float, max_chars: int
    ) -> Continuation: ...


@runtime_checkable
class DrawingPolicy(ScriptedPolicy, Protocol):
    """A policy whose random choices go through :class:`Draws`, so a code point can make
    them (arithmetic sampling); ``continue_text`` is ``continue_drawn`` with the rng's draws."""

    def continue_drawn(self, prompt: str, draws: Draws) -> Continuation: ...


class ReferencePolicy:
    """Replays a problem's reference solution line by line, corrupting lines at random.

    A corrupted line has its result off by 1-9; after the first error the path stays wrong
    and ends with a wrong answer (reference + the first error's offset), so wrong answers
    spread over a few values while right ones agree.
    """

    def __init__(self, solutions: Mapping[str, str], error_rate: float) -> None:
        self.solutions = dict(solutions)
        self.error_rate = error_rate
        self._prompt_cache: dict[str, str] = {}

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        return self.continue_drawn(prompt, RandomDraws(rng))

    def continue_drawn(self, prompt: str, draws: Draws) -> Continuation:
        """The continuation with each line's error decided by ``draws``: a line goes wrong
        with probability ``error_rate``, by an offset uniform in 1-9."""
        question = self._find_question(prompt)
        if question is None:
            return Continuation("I do not know.\n" + EOS, (-3.0,) * 16)
        reference = self.solutions[question].rstrip("\n").split("\n")
        generated = prompt.split(question, 1)[1]
        if _ASSISTANT_TURN in generated:  # a chat prompt: the answer starts after the header
            generated = generated.split(_ASSISTANT_TURN, 1)[1]
        elif generated.startswith("\n"):
            generated = generated[1:]
        done = generated.split("\n")
        finished_lines, partial = done[:-1], done[-1]
        offset = _first_offset(finished_lines, reference)
        parts: list[str] = []
        logprobs: list[float] = []
        for index in range(len(finished_lines), len(reference)):
            line = reference[index]
            if index == len(finished_lines) and partial:
                line = line[len(partial) :] if line.startswith(partial) else ""
            # blank lines (between "\n\n"-separated steps) cannot go wrong
            if offset is None and _last_number(line) is not None and draws.chance(self.error_rate):
                offset = draws.integer(1, 9)
                line = _shift_last_number(line, offset)
                lp = [-0.05] * len(line)
                if lp:
                    lp[-1] = -2.0
            elif offset is not None:
                if index == len(reference) - 1:
                    line = _shift_last_number(line, offset)
                lp = [-0.6] * len(line)
            else:
                lp = [-0.05] * len(line)
            last = index == len(reference) - 1
            parts.append(line + (EOS if last else "\n"))
            logprobs.extend([*lp, -0.01])
        return Continuation("".join(parts), tuple(logprobs))

    def next_token_logprobs(self, text: str) -> Mapping[str, float]:
        """The replay as a token-level distribution: a line is the reference line with
        probability ``1 - error_rate`` or has its result off by 1-9 (``error_rate / 9``
        each); after a wrong line the path stays wrong. From a line boundary this is exactly
        the distribution :meth:`continue_text` samples whole lines from."""
        question = self._find_question(text)
        if question is None:
            return {EOS: 0.0}  # it knows no such problem: it stops
        reference = self.solutions[question].rstrip("\n").split("\n")
        generated = text.split(question, 1)[1]
        if _ASSISTANT_TURN in generated:
            generated = generated.split(_ASSISTANT_TURN, 1)[1]
        elif generated.startswith("\n"):
            generated = generated[1:]
        *finished, partial = generated.split("\n")
        index = len(finished)
        if index >= len(reference):
            return {EOS: 0.0}
        ending = EOS if index == len(reference) - 1 else "\n"
        line, offset, e = reference[index], _first_offset(finished, reference), self.error_rate
        candidates = [(line, 1.0)]
        if offset is None and _last_number(line) is not None:
            candidates = [(line, 1.0 - e)]
            candidates += [(_shift_last_number(line, k), e / 9) for k in range(1, 10)]
        elif offset is not None and ending == EOS:
            candidates = [(_shift_last_number(line, offset), 1.0)]
        weights: dict[str, float] = {}
        for candidate, weight in candidates:
            whole = candidate + ending
            if weight > 0 and len(whole) > len(partial) and whole.startswith(partial):
                weights[whole[len(partial)]] = weights.get(whole[len(partial)], 0.0) + weight
        total = sum(weights.values())
        if total <= 0:
            return {EOS: 0.0}  # off the script (tokens it would never write): it stops
        return {char: math.log(w / total) for char, w in sorted(weights.items())}

    def _find_question(self, prompt: str) -> str | None:
        for key, question in self._prompt_cache.items():
            if prompt.startswith(key):
                return question
        found = next((q for q in self.solutions if q in prompt), None)
        if found is not None:
            key = prompt[: prompt.index(found) + len(found)]
            self._prompt_cache[key] = found
        return found


def read_solutions(path: Path) -> dict[str, str]:
    """Reference solutions by question from a JSONL file of problems (``question``/``solution``)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise EngineError(
            f"scripted engine: cannot read solutions {path}: {exc.strerror}"
        ) from None
    solutions = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EngineError(f"scripted engine: {path}:{number}: not JSON: {exc}") from None
        if isinstance(record, dict) and record.get("question") and record.get("solution"):
            solutions[str(record["question"])] = str(record["solution"])
    return solutions


def _first_offset(lines: list[str], reference: list[str]) -> int | None:
    for line, ref in zip(lines, reference, strict=False):
        if line != ref:
            return (_last_number(line) or 0) - (_last_number(ref) or 0) or 1
    return None


def _last_number(line: str) -> int | None:
    digits = ""
    for ch in reversed(line):
        if ch.isdigit():
            digits = ch + digits
        elif digits:
            break
    return int(digits) if digits else None


def _shift_last_number(line: str, offset: int) -> str:
    value = _last_number(line)
    if value is None:
        return line
    at = line.rfind(str(value))
    # keep what follows the number ("= 18." or "\\boxed{18}."): only the value changes
    return f"{line[:at]}{value + offset}{line[at + len(str(value)) :]}"

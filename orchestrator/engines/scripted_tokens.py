"""The scripted engine at the level of single tokens: exact next-token distributions.

A :class:`TokenPolicy` gives p(next character | text) outright, so the scripted engine can
sample character by character at any temperature and score given tokens exactly
(``logprobs_of``): what exact samplers (Metropolis-Hastings, draft verification) need in
unit tests. :class:`ReferenceTokens` is the reference replay of
:class:`~branchwise.orchestrator.engines.scripted.ReferencePolicy` written that way: a line
is the reference line with probability ``1 - error_rate``, or has its result off by 1-9
(``error_rate / 9`` each); after a wrong line the path stays wrong. From a line boundary its
distribution over continuations is exactly the line-level replay's.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from branchwise.orchestrator.engines.scripted import (
    _ASSISTANT_TURN,
    EOS,
    Continuation,
    ReferencePolicy,
    _first_offset,
    _last_number,
    _shift_last_number,
)

_NOWHERE: Mapping[str, float] = {EOS: 0.0}


@runtime_checkable
class TokenPolicy(Protocol):
    """A scripted policy that knows its next-token distribution (characters, EOS included)."""

    def next_token_logprobs(self, text: str) -> Mapping[str, float]:
        """log p of each possible next character after ``text`` (the prompt and what follows)."""
        ...


class ReferenceTokens:
    """The reference replay as a token-level distribution (see the module docstring)."""

    def __init__(self, solutions: Mapping[str, str], error_rate: float) -> None:
        self.replay = ReferencePolicy(solutions, error_rate)

    @classmethod
    def wrapping(cls, replay: ReferencePolicy) -> ReferenceTokens:
        """The token-level form of ``replay`` (sharing its solutions as they grow)."""
        policy = cls({}, replay.error_rate)
        policy.replay = replay
        return policy

    @property
    def solutions(self) -> dict[str, str]:
        return self.replay.solutions

    def next_token_logprobs(self, text: str) -> Mapping[str, float]:
        question = self.replay._find_question(text)
        if question is None:
            return _NOWHERE  # it knows no such problem: it stops
        reference = self.solutions[question].rstrip("\n").split("\n")
        generated = text.split(question, 1)[1]
        if _ASSISTANT_TURN in generated:
            generated = generated.split(_ASSISTANT_TURN, 1)[1]
        elif generated.startswith("\n"):
            generated = generated[1:]
        *finished, partial = generated.split("\n")
        index = len(finished)
        if index >= len(reference):
            return _NOWHERE
        ending = EOS if index == len(reference) - 1 else "\n"
        line = reference[index]
        offset = _first_offset(finished, reference)
        e = self.replay.error_rate
        candidates: list[tuple[str, float]]
        if offset is None and _last_number(line) is not None:
            candidates = [(line, 1.0 - e)]
            candidates += [(_shift_last_number(line, k), e / 9) for k in range(1, 10)]
        elif offset is not None and ending == EOS:
            candidates = [(_shift_last_number(line, offset), 1.0)]
        else:
            candidates = [(line, 1.0)]
        weights: dict[str, float] = {}
        for candidate, weight in candidates:
            whole = candidate + ending
            if weight > 0 and len(whole) > len(partial) and whole.startswith(partial):
                char = whole[len(partial)]
                weights[char] = weights.get(char, 0.0) + weight
        total = sum(weights.values())
        if total <= 0:
            return _NOWHERE  # off the script (forced tokens it would never write): it stops
        return {char: math.log(w / total) for char, w in sorted(weights.items())}


def sample_continuation(
    policy: TokenPolicy, prompt: str, rng: random.Random, temperature: float, max_chars: int
) -> Continuation:
    """Characters drawn one at a time from softmax(log p / temperature) (0: the likeliest;
    top-p and top-k are not applied), up to EOS or ``max_chars``. Log-probabilities are the
    policy's own (temperature 1), the top ones the whole next-token distribution, likeliest
    first."""
    text = prompt
    chars: list[str] = []
    chosen: list[float] = []
    tops: list[tuple[float, ...]] = []
    top_chars: list[tuple[str, ...]] = []
    while len(chars) < max_chars:
        dist = policy.next_token_logprobs(text)
        ranked = sorted(dist.items(), key=lambda item: (-item[1], item[0]))
        char = _draw(ranked, rng, temperature)
        chars.append(char)
        chosen.append(dist[char])
        tops.append(tuple(lp for _, lp in ranked))
        top_chars.append(tuple(c for c, _ in ranked))
        if char == EOS:
            break
        text += char
    return Continuation("".join(chars), tuple(chosen), tuple(tops), tuple(top_chars))


def score_continuation(policy: TokenPolicy, prompt: str, chars: Sequence[str]) -> list[float]:
    """log p of each of ``chars`` after ``prompt`` and the characters before it."""
    text = prompt
    out: list[float] = []
    for char in chars:
        out.append(policy.next_token_logprobs(text).get(char, -math.inf))
        text += char
    return out


def _draw(ranked: list[tuple[str, float]], rng: random.Random, temperature: float) -> str:
    if temperature == 0 or len(ranked) == 1:
        return ranked[0][0]
    top = ranked[0][1] / temperature
    weights = [math.exp(lp / temperature - top) for _, lp in ranked]
    point = rng.random() * sum(weights)
    for (char, _), weight in zip(ranked, weights, strict=True):
        point -= weight
        if point < 0:
            return char
    return ranked[-1][0]

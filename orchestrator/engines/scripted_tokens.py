"""The scripted engine sampling token by token: exact samplers need a known distribution.

:class:`TokenSampler` wraps any policy that gives p(next character | text) (a
:class:`~branchwise.orchestrator.engines.scripted.NextTokenPolicy`) so the scripted engine
samples it one character at a time, at the temperature a request asks for, and scores given
tokens under the same distribution. :func:`reference_tokens` is the reference replay written
that way (:meth:`ReferencePolicy.next_token_logprobs`): what tests of exact samplers
(Metropolis-Hastings, draft verification) run on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from branchwise.orchestrator.engines.scripted import (
    EOS,
    Continuation,
    NextTokenPolicy,
    ReferencePolicy,
)


class TokenSampler:
    """A next-token policy as a scripted policy that samples character by character."""

    def __init__(self, policy: NextTokenPolicy) -> None:
        self.policy = policy

    def next_token_logprobs(self, text: str) -> Mapping[str, float]:
        return self.policy.next_token_logprobs(text)

    def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
        return self.sample_at(prompt, rng, 1.0, 1 << 16)

    def sample_at(
        self, prompt: str, rng: random.Random, temperature: float, max_chars: int
    ) -> Continuation:
        """Characters drawn one at a time from softmax(log p / temperature) (0: the
        likeliest; top-p and top-k are not applied), up to EOS or ``max_chars``.
        Log-probabilities are the policy's own (temperature 1), the top ones the whole
        next-token distribution, likeliest first."""
        text = prompt
        chars: list[str] = []
        chosen: list[float] = []
        tops: list[tuple[float, ...]] = []
        top_chars: list[tuple[str, ...]] = []
        while len(chars) < max_chars:
            dist = self.policy.next_token_logprobs(text)
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


def reference_tokens(solutions: Mapping[str, str], error_rate: float) -> TokenSampler:
    """The reference replay sampled token by token (same law from a line boundary)."""
    return TokenSampler(ReferencePolicy(solutions, error_rate))


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

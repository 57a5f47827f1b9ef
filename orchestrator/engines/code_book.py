"""Arithmetic sampling's code book: code points and decoding a choice from one.

Arithmetic sampling (Vilnis et al. 2023) reads a sample off the model's arithmetic code
book: with the tokens in a fixed order, each token owns the interval of [0, 1) that its
probability covers after the ones before it; a code point picks the token whose interval
holds it and is rescaled into that interval for the next step. A code point is thus one
sample, and a sample drawn from a uniform code point has the model's own distribution. N
samples of one request take N code points spread evenly over [0, 1) with one random offset
(a randomised lattice), so two samples can only share a prefix as long as the prefix's
probability is more than their distance: they cannot collapse onto one another.

Here the lattice of a node's children is ordered by the radical inverse of their index
(0, 1/2, 1/4, 3/4, ...): the first 2^k children are themselves an even lattice, so a
strategy that samples a node's children in several requests, or metrics that re-select
from the first k samples, still see well-spread code points. Each point is the offset plus
a fixed shift modulo 1, so each is uniform on its own.

It is a sampling method (``sampling.method: arithmetic``), not a strategy: any strategy's
samples can be drawn this way (self-consistency and best-of-N, as in Parashar et al. 2024,
"Quasi-random Multi-Sample Inference for Large Language Models", or the k children of a
step search). Cost: the same tokens as ancestral sampling; on vLLM one request per sample
and a distribution computed once more per token (``vllm_code_book``). Knobs: none of its
own; the run seed fixes the offsets (same seed, same code points), and the recipe's
temperature and top-p shape the code book.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol

_BELOW_ONE = math.nextafter(1.0, 0.0)


def radical_inverse(index: int) -> float:
    """The base-2 van der Corput point of ``index`` (its bits mirrored after the point)."""
    if index < 0:
        raise ValueError(f"radical_inverse: index {index} must be >= 0")
    point, scale = 0.0, 0.5
    while index:
        if index & 1:
            point += scale
        index >>= 1
        scale /= 2
    return point


def lattice_offset(seed: int) -> float:
    """The lattice's shared random offset in [0, 1), from a seed (same seed, same codes)."""
    return random.Random(seed).random()


def code_points(offset: float, indices: Sequence[int]) -> tuple[float, ...]:
    """The code points of the children with these indices under a node (see module doc)."""
    return tuple(min((radical_inverse(i) + offset) % 1.0, _BELOW_ONE) for i in indices)


def decode_choice(probabilities: Sequence[float], code: float) -> tuple[int, float]:
    """The choice whose interval holds ``code`` and the code rescaled into it.

    ``probabilities`` (need not sum to one: they are normalised) are laid out in the order
    given; a choice without mass owns no interval. Returns (index, next code in [0, 1)).
    """
    total = math.fsum(probabilities)
    if not total > 0:
        raise ValueError("decode_choice: no choice has any probability")
    target = code * total
    low = 0.0
    last = -1
    for index, p in enumerate(probabilities):
        if p <= 0:
            continue
        last = index
        if target < low + p:
            return index, min(max((target - low) / p, 0.0), _BELOW_ONE)
        low += p
    # rounding put the code past the end: it belongs to the last choice with mass
    return last, _BELOW_ONE


class Draws(Protocol):
    """The random choices a scripted policy makes, from an rng or from a code point."""

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        ...

    def integer(self, low: int, high: int) -> int:
        """A uniform integer in [low, high]."""
        ...


class RandomDraws:
    """Ancestral sampling: each choice from the rng (as ``random()`` and ``randint`` draw)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


class CodeDraws:
    """Arithmetic sampling: each choice decoded from one code point, which is then rescaled.

    Choices are laid out as :class:`RandomDraws` reads its uniform numbers (``chance``:
    True on [0, p)), so the code point plays the part of all of a sample's random numbers.
    """

    def __init__(self, code: float) -> None:
        if not 0.0 <= code < 1.0:
            raise ValueError(f"code point {code} is not in [0, 1)")
        self.code = code

    def chance(self, p: float) -> bool:
        if p <= 0.0 or p >= 1.0:  # a sure choice leaves the code as it is
            return p >= 1.0
        index, self.code = decode_choice((p, 1.0 - p), self.code)
        return index == 0

    def integer(self, low: int, high: int) -> int:
        if high <= low:
            return low
        index, self.code = decode_choice((1.0,) * (high - low + 1), self.code)
        return low + index

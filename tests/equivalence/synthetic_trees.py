"""Synthetic trees for the AB-MCTS equivalence tests: one scoring function for both libraries.

A node is its path (the tuple of child indices from the root). Its latent quality is
z(child) = rho * z(parent) + drift + N(0, 1) noise, the noise a pure function of (seed,
path), so both searches see the same tree whatever order they build it in. A shape's score
is sigmoid(z) ("continuous") or a 0/1 draw with that probability ("binary"). Standard library
only: the reference side imports this file in its own environment.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist

Path = tuple[int, ...]


@dataclass(frozen=True)
class Shape:
    """How a child's quality follows its parent's, and how a quality becomes a score."""

    name: str
    rho: float  # 0: a child forgets its parent (wide pays); 1: it inherits (deep pays)
    drift: float  # added per step down
    binary: bool
    start: float = 0.0  # the root's quality


SHAPES = {
    s.name: s
    for s in (
        Shape("flat_continuous", 0.0, 0.0, False),
        Shape("deep_continuous", 1.0, 0.3, False, start=-1.0),
        Shape("mixed_continuous", 0.7, 0.0, False),
        Shape("flat_binary", 0.0, -2.2, True),
        Shape("deep_binary", 1.0, 0.4, True, start=-3.5),
    )
}


def uniform(seed: int, path: Path, salt: str) -> float:
    """A uniform in (0, 1) fixed by (seed, path, salt)."""
    digest = hashlib.blake2b(f"{seed}/{salt}/{path}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def quality(shape: Shape, seed: int, path: Path) -> float:
    z = shape.start
    for depth in range(1, len(path) + 1):
        noise = NormalDist().inv_cdf(uniform(seed, path[:depth], "z"))
        z = shape.rho * z + shape.drift + noise
    return z


def score(shape: Shape, seed: int, path: Path) -> float:
    """The node's score in [0, 1]."""
    p = 1.0 / (1.0 + math.exp(-quality(shape, seed, path)))
    if shape.binary:
        return 1.0 if uniform(seed, path, "y") < p else 0.0
    return p


def tree_summary(parents: list[int], scores: list[float]) -> dict[str, float]:
    """Wider and deeper counts, best and mean score of a tree grown one node per iteration.

    ``parents[i]`` is node i's parent (-1: the root, which has no score). Wider = new children
    at a node that already had one; deeper = steps down taken to reach each expanded node.
    """
    depth = {-1: 0}
    for i, p in enumerate(parents):
        depth[i] = depth[p] + 1
    internal = len(set(parents))
    return {
        "wider": float(len(parents) - internal),
        "deeper": float(sum(depth[p] for p in parents)),
        "best": max(scores),
        "mean": sum(scores) / len(scores),
    }

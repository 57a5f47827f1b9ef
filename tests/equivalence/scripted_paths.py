"""The scripted policy and PRM of the particle equivalence tests, in abstract form.

A path is a list of step states: "ok" (on track) or "offK" (the path went wrong by K, 1..9,
at its first such step and stays wrong). This mirrors the scripted engine's reference
policy (each step goes wrong with probability ``error_rate``, by a uniform 1..9) on problems
of ``DEPTH`` lines, so its_hub (driven by these functions) and Branchwise (driven by the
scripted engine) sample the same process. Standard library only: the reference side imports
this file in its own environment.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

DEPTH = 4  # three computation lines and the answer line


def next_state(steps: Sequence[str], error_rate: float, rng: random.Random) -> str:
    """The next step's state given the path so far."""
    if steps and steps[-1] != "ok":
        return steps[-1]
    if rng.random() < error_rate:
        return f"off{rng.randint(1, 9)}"
    return "ok"


def outcome(steps: Sequence[str]) -> str:
    """ "ok", or the first error's "offK": the answer the path reaches (or heads for)."""
    return next((s for s in steps if s != "ok"), "ok")


def path_score(steps: Sequence[str]) -> float:
    """The PRM's score of a path: 0.7 on track; a wrong path by K scores 0.1 * K - 0.05 when
    finished and 0.1 less per step still to go (so a prefix's score is not its path's)."""
    state = outcome(steps)
    if state == "ok":
        return 0.7
    return max(0.02, 0.1 * int(state[3:]) - 0.05 - 0.1 * (DEPTH - len(steps)))


def weighted_vote(outcomes: Sequence[str], log_weights: Sequence[float]) -> str:
    """The outcome with the largest total softmax weight (ties: the first in sorted order)."""
    top = max(log_weights)
    totals: dict[str, float] = {}
    for o, w in zip(outcomes, log_weights, strict=True):
        totals[o] = totals.get(o, 0.0) + math.exp(w - top)
    return min(totals, key=lambda o: (-totals[o], o))

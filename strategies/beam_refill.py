"""Keeping a beam full when its paths finish (beam search, strategies/beam_search.py).

search-and-learn's beam search keeps N paths at work at every depth: when fewer open paths
are left than slots, it repeats the open paths, in rank order, until the slots are full, so
a finished path's budget goes to the paths still open instead of shrinking the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def refill_beam(kept: Sequence[T], width: int) -> list[T]:
    """``width`` slots from the kept paths (best first), cycling through them when too few."""
    if not kept:
        return []
    return [kept[i % len(kept)] for i in range(width)]

"""DeepConf's online rules as pure functions (strategies/deepconf.py).

The stop threshold: the reference code takes ``np.percentile(lowest, 100 - keep_percent)`` of
the warm-up traces' lowest group confidences (linear interpolation), which on a small warm-up
passes one trace fewer than the share says; Branchwise's earlier ``ceiling`` rule passes
exactly ceil(keep_percent % of the warm-up). The consensus stop: the paper checks it after
every trace; with traces streamed ``wave`` at a time, they are counted in the wave's order and
counting stops at the first trace after which the leader holds the consensus share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import numpy as np

ThresholdRule = Literal["percentile", "ceiling"]
T = TypeVar("T")


def stop_threshold(lowest: Sequence[float], keep_percent: float, rule: ThresholdRule) -> float:
    """The online stop threshold from the warm-up traces' lowest group confidences."""
    if not lowest:
        raise ValueError("no warm-up confidences")
    if rule == "percentile":
        return float(np.percentile(np.asarray(lowest, dtype=float), 100.0 - keep_percent))
    ordered = sorted(lowest, reverse=True)
    return ordered[max(1, math.ceil(len(ordered) * keep_percent / 100)) - 1]


def count_until_consensus(
    voters: list[T], arrivals: Sequence[T | None], share: Callable[[list[T]], float], tau: float
) -> tuple[list[T], int]:
    """Add a wave's traces to the voters one by one (None: a trace that does not vote), stopping
    after the first that brings the leader's share to ``tau``; returns (voters, traces used)."""
    out = list(voters)
    for used, trace in enumerate(arrivals, start=1):
        if trace is not None:
            out.append(trace)
            if share(out) >= tau:
                return out, used
    return out, len(arrivals)

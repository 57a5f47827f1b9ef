"""Pure rules of particle filtering's weights and answer pool (strategies/particle_filter.py).

A particle's potential is log G(x_1:t) = logit(value of its prefix) / temperature, where the
value is the scorer's aggregated path score. Proper importance weights carry the *incremental*
potential, log G(x_1:t) - log G(x_1:t-1): the value already judges the whole prefix, so adding
each step's full potential (the ``product`` rule, Branchwise's earlier one) counts earlier steps
again, once per step, under min or product aggregation. Resampling every step (Puri et al.'s
filter and its_hub's) weighs a particle by its current potential alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

WeightCarry = Literal["incremental", "product"]
FinalSweeps = Literal["last", "all"]
ReferenceWeight = Literal["final", "step"]

T = TypeVar("T")


def next_log_weight(
    weight: float, potential: float, previous: float, *, carry: WeightCarry | None
) -> float:
    """The particle's log weight after a step.

    ``carry`` None (every-step resampling): the current potential alone. ``incremental``:
    the weight plus this potential against the one it had at the last weighing (``previous``;
    0 at the root), so a finished particle that did not move gains nothing. ``product``: the
    weight plus the whole potential, again at every step.
    """
    if carry is None:
        return potential
    if carry == "incremental":
        return weight + potential - previous
    return weight + potential


def answer_pool(sweeps: Sequence[tuple[Sequence[T], T | None]], rule: FinalSweeps) -> list[T]:
    """The particles the answer is chosen from; a sweep is (its free particles, its reference).

    ``last``: the last sweep's particles, reference included, as its_hub answers. ``all``:
    every sweep's free particles and no reference: a sweep's reference is a final particle of
    the sweep before, already in the pool, and must not vote twice.
    """
    if not sweeps:
        return []
    if rule == "last":
        free, reference = sweeps[-1]
        return ([reference] if reference is not None else []) + list(free)
    return [p for free, _ in sweeps for p in free]

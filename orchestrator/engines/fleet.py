"""The servers behind one OpenAI engine: routing, health and fail-over bookkeeping.

Routing is least outstanding requests with prefix affinity: the first request of an affinity
key (one problem) goes to the healthy server with the fewest requests in flight, and every
later request of that key follows it there, so the problem's prompt stays in one prefix
cache. A server whose connection fails is marked down at once; its affinity keys move to the
least loaded healthy server on their next request. A periodic health check (``GET /health``)
marks down a server that answers it with an error (vLLM does when its engine died) and
brings servers back when they answer again. The pool never sends anything itself: the
engine asks it where to send and tells it what happened.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Sequence

logger = logging.getLogger(__name__)

_MAX_AFFINITY_KEYS = 100_000  # oldest keys are forgotten first; a forgotten key is re-routed


class ServerPool:
    """Load, health and affinity of each server, by index into ``urls``."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = [url.rstrip("/") for url in urls]
        self.inflight = [0] * len(self.urls)
        self.healthy = [True] * len(self.urls)
        self.sent = [0] * len(self.urls)
        self.failovers = 0
        self._affinity: OrderedDict[str, int] = OrderedDict()
        self._turn = 0

    def pick(self, affinity: str | None, avoid: Collection[int] = ()) -> int:
        """Where the next request goes: ``affinity``'s server if it is up, else the least loaded.

        ``avoid`` holds servers that already failed this request; they are used only when no
        other server is left, and servers marked down only when every server is down.
        """
        everyone = range(len(self.urls))
        candidates = [i for i in everyone if self.healthy[i] and i not in avoid]
        if not candidates:
            candidates = [i for i in everyone if i not in avoid] or list(everyone)
        if affinity is not None:
            home = self._affinity.get(affinity)
            if home is not None and home in candidates:
                self._affinity.move_to_end(affinity)
                return home
        least = min(self.inflight[i] for i in candidates)
        tied = [i for i in candidates if self.inflight[i] == least]
        choice = tied[self._turn % len(tied)]
        self._turn += 1
        if affinity is not None:
            self._affinity[affinity] = choice
            self._affinity.move_to_end(affinity)
            if len(self._affinity) > _MAX_AFFINITY_KEYS:
                self._affinity.popitem(last=False)
        return choice

    def begin(self, server: int) -> None:
        self.inflight[server] += 1
        self.sent[server] += 1

    def end(self, server: int) -> None:
        self.inflight[server] -= 1

    def mark_down(self, server: int, reason: str) -> None:
        if self.healthy[server]:
            logger.warning("server %s marked down: %s", self.urls[server], reason)
        self.healthy[server] = False

    def mark_up(self, server: int) -> None:
        if not self.healthy[server]:
            logger.warning("server %s is back", self.urls[server])
        self.healthy[server] = True

    def any_other_up(self, avoid: Collection[int]) -> bool:
        """True when a healthy server outside ``avoid`` is left to try at once."""
        return any(up and i not in avoid for i, up in enumerate(self.healthy))

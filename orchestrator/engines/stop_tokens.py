"""Stop tokens: the tokens whose own text holds a stop string, so vLLM's engine stops on them.

vLLM looks for stop strings in its front end, in text the engine core has already sent back;
by then the core has scheduled the request for more tokens, and only an abort from the front
end ends it. A stop token id is checked in the core's own step, and the request ends there.

A token whose text holds a stop string ends a completion exactly where the stop string would
(nothing before it held one, or generation would have stopped earlier), so the stop token ids
change no completion. The stop strings stay in the request and still catch what the tokens
cannot (a stop string split across two tokens); a completion a stop token ended reports the
stop string its token holds, as if the stop string had ended it (:meth:`StopTokens.reason`).
Special tokens are left out: completions skip their text, so no stop string can end there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_STOP_TOKENS = 64  # per request: the engine checks each generated token against the list
"""At most this many stop token ids, the shortest texts first (the likeliest to be sampled)."""


@dataclass(frozen=True)
class StopTokens:
    """Token ids that hold a stop string, each with the stop string it holds."""

    held: Mapping[int, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return list(self.held)

    def reason(self, stop_reason: str | int | None, text: str) -> str | int | None:
        """The engine's stop reason for a completion of ``text``, a stop token read as the stop
        string it holds. Only when ``text`` holds it: otherwise the server did not find the
        string where the token ended, and the completion keeps the token id as its reason."""
        if isinstance(stop_reason, int) and not isinstance(stop_reason, bool):
            held = self.held.get(stop_reason)
            if held is not None and held in text:
                return held
        return stop_reason


NO_STOP_TOKENS = StopTokens()


def find_stop_tokens(tokenizer: Any, stop: Sequence[str]) -> StopTokens:
    """The tokenizer's tokens whose text alone holds one of ``stop`` (at most MAX_STOP_TOKENS).

    Each token is decoded alone as completions are (special tokens skipped: every token the
    tokenizer marks special, not only the named ones, reads as nothing), and a token whose text
    alone is not whole characters is left out (its bytes may join its neighbours' in context).
    """
    if not stop:
        return NO_STOP_TOKENS
    texts = tokenizer.batch_decode(
        [[token_id] for token_id in range(len(tokenizer))],
        skip_special_tokens=True,
        clean_up_tokenization_spaces=False,
    )
    found = []
    for token_id, text in enumerate(texts):
        if "\ufffd" in text:
            continue
        held = next((s for s in stop if s in text), None)
        if held is not None:
            found.append((len(text), token_id, held))
    found.sort()
    return StopTokens({token_id: held for _, token_id, held in found[:MAX_STOP_TOKENS]})


class StopTokenCache:
    """Each stop-string set's tokens, found once (concurrent asks share one search).

    No tokenizer here (yet) is not remembered: the next ask looks again. A tokenizer that
    cannot be searched (its decode raises) gives no stop tokens, with one warning: the stop
    strings still work alone.
    """

    def __init__(self) -> None:
        self._found: dict[tuple[str, ...], asyncio.Future[StopTokens | None]] = {}

    async def get(self, stop: Sequence[str], tokenizer: Callable[[], Awaitable[Any]]) -> StopTokens:
        """The tokens for ``stop``; ``tokenizer`` gives the tokenizer, or None (none here)."""
        key = tuple(stop)
        if not key:
            return NO_STOP_TOKENS
        known = self._found.get(key)
        if known is None:
            known = asyncio.ensure_future(self._find(key, tokenizer))
            self._found[key] = known
        try:
            found = await asyncio.shield(known)
        except BaseException:
            if known.done() and (known.cancelled() or known.exception() is not None):
                self._forget(key, known)  # failed: look again next time
            raise
        if found is None:
            self._forget(key, known)
            return NO_STOP_TOKENS
        return found

    def _forget(self, key: tuple[str, ...], known: asyncio.Future[StopTokens | None]) -> None:
        if self._found.get(key) is known:  # not a newer search another caller started
            del self._found[key]

    @staticmethod
    async def _find(
        stop: tuple[str, ...], tokenizer: Callable[[], Awaitable[Any]]
    ) -> StopTokens | None:
        found = await tokenizer()
        if found is None:
            return None
        try:
            return await asyncio.to_thread(find_stop_tokens, found, stop)
        except Exception as exc:  # a tokenizer without batch_decode's usual arguments
            log.warning("no stop tokens for %r (stop strings alone): %s", stop, exc)
            return NO_STOP_TOKENS

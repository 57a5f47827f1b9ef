"""Stop tokens: the tokens whose own text holds a stop string, so vLLM's engine stops on them.

vLLM looks for stop strings in its front end, in text the engine core has already sent back;
by then the core has scheduled the request for more tokens, and only an abort from the front
end ends it. A stop token id is checked in the core's own step, and the request ends there.

A token whose text holds a stop string ends a completion exactly where the stop string would
(nothing before it held one, or generation would have stopped earlier), so the stop token ids
change no completion. The stop strings stay in the request and still catch what the tokens
cannot (a stop string split across two tokens); a completion a stop token ended reports the
stop string its token holds, as if the stop string had ended it (:meth:`StopTokens.reason`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_STOP_TOKENS = 64  # per request: the engine checks each generated token against the list
"""At most this many stop token ids, the shortest texts first (the likeliest to be sampled)."""


@dataclass(frozen=True)
class StopTokens:
    """Token ids that hold a stop string, each with the stop string it holds."""

    held: Mapping[int, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return list(self.held)

    def reason(self, stop_reason: str | int | None) -> str | int | None:
        """The engine's stop reason, with a stop token read as the stop string it holds."""
        if isinstance(stop_reason, int) and not isinstance(stop_reason, bool):
            return self.held.get(stop_reason, stop_reason)
        return stop_reason


def find_stop_tokens(tokenizer: Any, stop: Sequence[str]) -> StopTokens:
    """The tokenizer's tokens whose text alone holds one of ``stop`` (at most MAX_STOP_TOKENS).

    Special tokens are left out (completions skip their text), and so is a token whose text
    alone is not whole characters (its bytes may join its neighbours' in context).
    """
    if not stop:
        return StopTokens()
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode(
        [[token_id] for token_id in range(len(tokenizer))], clean_up_tokenization_spaces=False
    )
    found = []
    for token_id, text in enumerate(texts):
        if token_id in special or "\ufffd" in text:
            continue
        held = next((s for s in stop if s in text), None)
        if held is not None:
            found.append((len(text), token_id, held))
    found.sort()
    return StopTokens({token_id: held for _, token_id, held in found[:MAX_STOP_TOKENS]})


class StopTokenCache:
    """Each stop-string set's tokens, found once (concurrent asks share one search)."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, ...], asyncio.Future[StopTokens]] = {}

    async def get(self, stop: Sequence[str], tokenizer: Callable[[], Awaitable[Any]]) -> StopTokens:
        """The tokens for ``stop``; ``tokenizer`` gives the tokenizer, or None (no tokens)."""
        key = tuple(stop)
        known = self._found.get(key)
        if known is None:
            known = asyncio.ensure_future(self._find(key, tokenizer))
            self._found[key] = known
        try:
            return await asyncio.shield(known)
        except BaseException:
            if known.done():
                self._found.pop(key, None)  # failed: look again next time
            raise

    @staticmethod
    async def _find(stop: tuple[str, ...], tokenizer: Callable[[], Awaitable[Any]]) -> StopTokens:
        found = await tokenizer()
        if found is None or not stop:
            return StopTokens()
        return await asyncio.to_thread(find_stop_tokens, found, stop)

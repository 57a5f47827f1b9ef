"""Token ids and read positions for a rendered reward-model input.

:class:`~rewards.rendering.WholeText` is tokenized whole (as the model cards do) and each read
offset ``o`` becomes the index of the last token of ``text[:o]``. That is only meaningful if
the tokens of ``text[:o]`` are a prefix of the tokens of ``text``, i.e. no BPE merge crosses
the read point; this is checked for every read and a path where it fails is an error (never a
guessed position). :class:`~rewards.rendering.Pieces` are tokenized piece by piece. Encodings
are cached by string, so a child path re-encodes only the text its parent did not have.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from branchwise.rewards.rendering import Pieces, Rendered, WholeText

Encode = Callable[[str, bool], Awaitable[list[int]]]


class InputEncoder:
    """Turns rendered inputs into (token ids, read positions) with a bounded string cache."""

    def __init__(self, encode: Encode, *, cache_size: int = 8192) -> None:
        self._encode = encode
        self._cache: OrderedDict[tuple[str, bool], list[int]] = OrderedDict()
        self.cache_size = cache_size

    async def encode(self, text: str, special: bool) -> list[int]:
        key = (text, special)
        ids = self._cache.get(key)
        if ids is None:
            ids = await self._encode(text, special)
            self._cache[key] = ids
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return ids

    async def ids_and_positions(self, rendered: Rendered) -> tuple[list[int], list[int]]:
        if isinstance(rendered, WholeText):
            return await self._whole(rendered)
        return await self._pieces(rendered)

    async def _whole(self, rendered: WholeText) -> tuple[list[int], list[int]]:
        text, special = rendered.text, rendered.special
        ids, *prefixes = await asyncio.gather(
            self.encode(text, special), *(self.encode(text[:o], special) for o in rendered.reads)
        )
        positions = []
        for offset, prefix in zip(rendered.reads, prefixes, strict=True):
            if not prefix or ids[: len(prefix)] != prefix:
                raise ValueError(
                    f"a token crosses the read point after {text[max(0, offset - 30) : offset]!r}: "
                    "the tokenizer merges it with the text that follows"
                )
            positions.append(len(prefix) - 1)
        return ids, positions

    async def _pieces(self, rendered: Pieces) -> tuple[list[int], list[int]]:
        distinct = list(dict.fromkeys(rendered.steps))
        head, tag, *pieces = await asyncio.gather(
            self.encode(rendered.head, rendered.head_special),
            self.encode(rendered.tag, False),
            *(self.encode(step, False) for step in distinct),
        )
        by_step = dict(zip(distinct, pieces, strict=True))
        ids, positions = list(head), []
        for step in rendered.steps:
            piece = by_step[step] + tag[-1:]
            if not piece:
                raise ValueError(f"step {step!r} encodes to no tokens")
            ids.extend(piece)
            positions.append(len(ids) - 1)
        return ids, positions

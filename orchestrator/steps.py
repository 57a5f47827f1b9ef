"""Where a step ends: one rule shared by generation, node text, token ids and PRM positions.

**A step ends with the token that completes the step delimiter.** On a byte-level BPE
tokenizer the delimiter (``"\\n\\n"``) is often merged with the characters around it
(``".\\n\\n"``, ``".\\n\\n\\n"``); the engine stops after that whole token, and the characters
it carries past the delimiter stay in the step. So, for every node:

- its text is the decode of its token ids (engines guarantee it, see ``Completion.text``),
- its child's prompt is the parent's path token ids, exactly,
- a node generated as one step is one step; the PRM reads it at its last token.

Inside a longer text (a whole solution sampled in one request) the same boundary is found
from the text: after each delimiter and the line breaks directly following it. With the
usual pre-tokenization of byte-level BPE vocabularies (Qwen2, Llama 3: punctuation and
whitespace runs absorb the line breaks that follow them, never the next word), line breaks
are the only characters a token can carry past a newline delimiter, so both ways agree.

Blank segments (only whitespace) never count as steps: they join the step before them, or
the first step when they open the text. The steps of a path always concatenate back to the
path's text.
"""

from __future__ import annotations

from collections.abc import Iterable

from branchwise.core.graph import Node

_LINE_BREAKS = "\r\n"


def split_text(text: str, delimiter: str) -> list[str]:
    """``text`` cut after each delimiter (and the line breaks right after it).

    The pieces concatenate to ``text``; the last piece is the unterminated rest (maybe "").
    """
    pieces: list[str] = []
    start = 0
    while True:
        at = text.find(delimiter, start)
        if at < 0:
            break
        end = at + len(delimiter)
        while end < len(text) and text[end] in _LINE_BREAKS:
            end += 1
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def path_steps(segments: Iterable[tuple[str, bool]], delimiter: str) -> tuple[str, ...]:
    """The steps of a path from its nodes' ``(text, ends_a_step)`` in order from the root.

    ``ends_a_step`` is true for a node whose generation stopped at the delimiter: its end is
    a step boundary even when its last token carried characters past the delimiter.
    """
    steps: list[str] = []
    current = ""
    for text, ends_step in segments:
        if ends_step:  # generation stopped at its one delimiter: the whole node closes a step
            steps.append(current + text)
            current = ""
            continue
        *closed, rest = split_text(text, delimiter)
        for piece in closed:
            steps.append(current + piece)
            current = ""
        current += rest
    if current:
        steps.append(current)
    return _merge_blank(steps)


def split_steps(text: str, delimiter: str) -> tuple[str, ...]:
    """The steps of one solution text, each keeping its delimiter; blank pieces merged."""
    return path_steps([(text, False)], delimiter)


def _merge_blank(steps: list[str]) -> tuple[str, ...]:
    merged: list[str] = []
    pending = ""  # blank text before the first real step
    for step in steps:
        if step.strip():
            merged.append(pending + step)
            pending = ""
        elif merged:
            merged[-1] += step
        else:
            pending += step
    if pending:
        if merged:
            merged[-1] += pending
        else:
            return ()  # nothing but whitespace: no steps at all
    return tuple(merged)


def ends_step(node: Node) -> bool:
    """Whether generation stopped this node at a stop string (the step delimiter)."""
    return node.finish_reason == "stop" and not node.terminal

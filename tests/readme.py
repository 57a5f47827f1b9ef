"""The README's code blocks, read by the tests that run them (so none can rot unnoticed).

Each block is classified; a line of a shell block the tests do not know how to run is an error
(``shell_lines`` returns it as ``unknown``), so a new README command needs a test, or a stated
reason it cannot run here, before it can land.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# Lines the tests cannot run here, each with the reason (matched by prefix).
NOT_RUN_HERE = {
    "make setup": "installs into .venv; `make test` itself runs it",
    "make demo": "the testbed demo; `branchwise demo` runs in the vLLM tier",
    "make test": "the whole check; running it from a test would recurse",
    "hf download": "downloads multi-GB checkpoints from the hub",
    "pip install": "installs packages",
    "pip uninstall": "uninstalls packages",
}


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # where the block starts in README.md


def blocks(language: str | None = None) -> list[Block]:
    text = README.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if language is None or match.group(1) == language:
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(match.group(1), match.group(2), line))
    return found


def shell_commands(block: Block) -> list[str]:
    """The block's commands as written (comments dropped; continued or quoted lines joined)."""
    commands, pending = [], ""
    for raw in block.text.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{raw}" if pending else raw
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if words:
            commands.append(_drop_comment(pending.strip()))
        pending = ""
    return commands


def _drop_comment(command: str) -> str:
    """The command without its trailing ``# ...`` (a ``#`` outside quotes after a space)."""
    quote = ""
    for index, char in enumerate(command):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1].isspace()):
            return command[:index].rstrip()
    return command.rstrip()


def branchwise_argv(command: str) -> list[str] | None:
    """``$B eval ...`` or ``.venv/bin/branchwise eval ...`` as argv for ``cli.main``, else None."""
    words = shlex.split(command, comments=True)
    if words and words[0] in {"$B", ".venv/bin/branchwise", "branchwise"}:
        return words[1:]
    return None


def not_run_reason(command: str) -> str | None:
    return next((why for key, why in NOT_RUN_HERE.items() if command.startswith(key)), None)

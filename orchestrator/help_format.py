"""The help formatter every command line of the project uses: defaults shown, text as written."""

from __future__ import annotations

import argparse
import copy
from typing import Any


def _shown(default: Any) -> bool:
    return not any(default is nothing for nothing in (None, False, argparse.SUPPRESS)) and (
        default != []
    )


def _with_default(text: str, default: Any) -> str:
    shown = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Epilogs as written, and every option's default in its help (unless it says it), options
    without a help text included."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and _shown(action.default):
            action = copy.copy(action)  # argparse prints no help line for an option without text
            action.help = _with_default("", action.default)
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.option_strings and _shown(action.default) and "default" not in text:
            return _with_default(text, action.default)
        return text

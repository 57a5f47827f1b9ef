"""Every command line shows each option's default, also where the option has no help text."""

from __future__ import annotations

import argparse

from branchwise.orchestrator.help_format import HelpWithDefaults


def test_defaults_show_with_and_without_a_help_text() -> None:
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpWithDefaults)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budgets", default="1,2", help="multiples (default 1,2)")
    parser.add_argument("--rate", default="5%", help="share")
    parser.add_argument("--quiet", action="store_true", help="print less")
    parser.add_argument("--name")
    text = " ".join(parser.format_help().split())
    assert "--problems PROBLEMS (default: 100)" in text
    assert "multiples (default 1,2)" in text and "(default: 1,2)" not in text
    assert "share (default: 5%)" in text
    assert "print less" in text and "print less (default" not in text
    assert "--name NAME" in text and "NAME (default" not in text

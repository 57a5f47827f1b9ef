"""The benchmarks' split rule: only the final run reads the held-back test split."""

from __future__ import annotations

import argparse


def check_split(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--split test`` without ``--final``, and ``--final`` on any other split."""
    if args.split == "test" and not args.final:
        parser.error(
            "--split test reads the held-back test split: only the final run may, once every "
            "choice is made on val; add --final to run it"
        )
    if args.final and args.split != "test":
        parser.error("--final is the run on the test split: add --split test")


def add_split_arguments(parser: argparse.ArgumentParser, default: str = "val") -> None:
    """``--split`` and ``--final``, the pair every benchmark that reads a split takes."""
    parser.add_argument("--split", choices=("val", "eval", "test"), default=default)
    parser.add_argument("--final", action="store_true", help="the final run: may read test")

"""The ``branchwise`` commands that read stored runs: summary, compare, report and trace."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from branchwise.core.errors import BranchwiseError
from branchwise.orchestrator.exit_codes import EXIT_ALL_FAILED, EXIT_OK, EXIT_PROBLEMS_FAILED
from branchwise.orchestrator.metrics import compare_runs, run_metrics
from branchwise.orchestrator.report import comparison_text, summary_text
from branchwise.orchestrator.store import DB_NAME, ResultStore, is_store


def open_stores(dirs: Sequence[Path]) -> list[ResultStore]:
    """Each DIR is a results folder, or a folder of them (a --budgets sweep)."""
    folders: list[Path] = []
    for folder in dirs:
        if is_store(folder):
            folders.append(folder)
        elif folder.is_dir() and (inner := sorted(p for p in folder.iterdir() if is_store(p))):
            folders.extend(sorted(inner, key=_budget_order))
        else:
            raise BranchwiseError(f"{folder}: not a results folder (no {DB_NAME} in it)")
    return [ResultStore(f, read_only=True) for f in folders]


def _budget_order(path: Path) -> tuple[int, str]:
    tail = path.name.rpartition("-")[2]
    return (int(tail) if tail.isdigit() else 0, path.name)


def summary(args: argparse.Namespace) -> int:
    code = EXIT_OK
    for store in open_stores(args.dirs):
        with store:
            records = store.records()
            metrics = run_metrics(records)
            if args.json:
                print(json.dumps({"folder": str(store.folder), **metrics.to_dict()}))
            else:
                print(summary_text(metrics, title=f"{store.folder}:"))
            if metrics.failed:
                code = max(
                    code,
                    EXIT_ALL_FAILED if metrics.failed == metrics.problems else EXIT_PROBLEMS_FAILED,
                )
    return code


def compare(args: argparse.Namespace) -> int:
    (a,) = open_stores([args.a])[:1]
    (b,) = open_stores([args.b])[:1]
    with a, b:
        comparison = compare_runs(a.records(), b.records())
    print(comparison_text(comparison, str(args.a), str(args.b)))
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    from branchwise.orchestrator.report_html import write_report

    stores = open_stores(args.dirs)
    try:
        html_path, md_path = write_report(stores, args.out, worst=args.worst)
    finally:
        for store in stores:
            store.close()
    print(f"report: {html_path} and {md_path}")
    return EXIT_OK


def trace(args: argparse.Namespace) -> int:
    from branchwise.orchestrator.trace import write_trace

    with ResultStore(args.dir, read_only=True) as store:
        graph = store.graph(args.problem)
        if graph is None:
            raise BranchwiseError(
                f"{args.dir}: problem {args.problem!r} has no stored graph; run eval with --traces"
            )
        record = next(r for r in store.records() if r["problem_id"] == args.problem)
    suffix = {"html": "html", "json": "json", "graphml": "graphml", "dot": "dot"}[args.format]
    out = args.out or Path(f"trace-{file_safe(args.problem)}.{suffix}")
    write_trace(graph, record, out, format=args.format)
    print(f"trace: {out}")
    return EXIT_OK


def file_safe(problem_id: str) -> str:
    """A file name from a problem id that stays in the working folder: characters other
    than letters, digits, ``.``, ``_`` and ``-`` become ``_`` (so no ``/``), and a short hash
    keeps two ids that differ only there apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", problem_id)[:100]
    if safe == problem_id:
        return safe
    digest = hashlib.blake2b(problem_id.encode("utf-8", "replace"), digest_size=4)
    return f"{safe}-{digest.hexdigest()}"

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
from branchwise.orchestrator.metrics import correctness, run_metrics
from branchwise.orchestrator.paired_stats import holm, paired_test
from branchwise.orchestrator.report import comparison_text, summary_text
from branchwise.orchestrator.store import DB_NAME, ResultStore, is_store


def open_stores(dirs: Sequence[Path]) -> list[ResultStore]:
    """Each DIR is a results folder, or a folder of them (a --budgets sweep)."""
    return [ResultStore(f, read_only=True) for folder in dirs for f in sweep_runs(folder).values()]


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


def sweep_runs(folder: Path) -> dict[str, Path]:
    """A results folder as {"": folder}, or a --budgets sweep as {budget folder name: folder}."""
    if is_store(folder):
        return {"": folder}
    if folder.is_dir() and (inner := sorted(p for p in folder.iterdir() if is_store(p))):
        return {p.name: p for p in sorted(inner, key=_budget_order)}
    raise BranchwiseError(f"{folder}: not a results folder (no {DB_NAME} in it)")


def paired_runs(a: Path, b: Path) -> list[tuple[str, Path, Path]]:
    """(budget, run of A, run of B): one pair, or one per budget of two matching sweeps.

    A sweep is never silently cut to one of its budgets: a sweep against a single run, or two
    sweeps over different budgets, are refused.
    """
    runs_a, runs_b = sweep_runs(a), sweep_runs(b)
    if set(runs_a) == set(runs_b):
        return [(name, runs_a[name], runs_b[name]) for name in runs_a]

    def shape(runs: dict[str, Path]) -> str:
        return "one run" if "" in runs else "a sweep of " + ", ".join(runs)

    hint = (
        "; name one budget folder of the sweep"
        if "" in runs_a or "" in runs_b
        else "; compare sweeps over the same budgets"
    )
    raise BranchwiseError(f"cannot pair {a} ({shape(runs_a)}) with {b} ({shape(runs_b)}){hint}")


def compare(args: argparse.Namespace) -> int:
    pairs = paired_runs(args.a, args.b)
    tests = []
    for budget, path_a, path_b in pairs:
        with (
            ResultStore(path_a, read_only=True) as store_a,
            ResultStore(path_b, read_only=True) as store_b,
        ):
            right_a, right_b = correctness(store_a.records()), correctness(store_b.records())
        if set(right_a) != set(right_b):
            raise BranchwiseError(
                f"{path_a} and {path_b} graded different problems ({len(right_a)} and "
                f"{len(right_b)}, {len(set(right_a) & set(right_b))} shared); compare runs of "
                "the same problems"
            )
        tests.append((budget, path_a, path_b, paired_test(right_a, right_b)))
    corrected = holm([t.p_value for *_, t in tests]) if len(tests) > 1 else [None] * len(tests)
    if args.json:
        out = [
            {"budget": budget or None, "a": str(pa), "b": str(pb), **test.to_dict(),
             "p_holm": p_holm}
            for (budget, pa, pb, test), p_holm in zip(tests, corrected, strict=True)
        ]  # fmt: skip
        print(json.dumps({"a": str(args.a), "b": str(args.b), "comparisons": out}))
        return EXIT_OK
    texts = [
        comparison_text(test, str(pa), str(pb), holm_p=p_holm)
        for (_, pa, pb, test), p_holm in zip(tests, corrected, strict=True)
    ]
    print("\n\n".join(texts))
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

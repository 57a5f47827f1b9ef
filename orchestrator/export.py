"""``branchwise export``: a stored run as one row per sample, for tools outside Branchwise.

A row is one problem (a *sample* in lm-evaluation-harness's per-sample logs: one document and
what the model answered), with that harness's field names where the meaning is the same:
``doc_id`` (the problem's position), ``doc`` (its id and question), ``target`` (the
reference answer), ``resps`` (every finished sample's answer, in path order) and
``filtered_resps`` (the answer the strategy chose, as a one-item list). Branchwise's own
fields follow under their own names: ``problem_id``, ``answer``, ``correct``, ``error``, the
search's usage (``generated_tokens``, ``prompt_tokens``, ...), ``latency``, ``strategy``,
``budget`` and the run's folder. JSONL always; Parquet with the ``parquet`` extra (pyarrow).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from branchwise.core.errors import BranchwiseError
from branchwise.orchestrator.cli_runs import open_stores
from branchwise.orchestrator.store import ResultStore

ExportFormat = Literal["jsonl", "parquet"]
USAGE_FIELDS = (
    "prompt_tokens",
    "cached_prompt_tokens",
    "generated_tokens",
    "engine_calls",
    "scorer_calls",
    "scorer_prompt_tokens",
    "scorer_cached_prompt_tokens",
    "scorer_generated_tokens",
    "nodes",
    "aborted_requests",
    "seconds",
)


def export_rows(store: ResultStore) -> list[dict[str, Any]]:
    """One row per problem of the store, in dataset order (same keys in every row)."""
    info = store.run_info()
    recipe = info.recipe if info is not None else {}
    strategy = (recipe.get("strategy") or {}).get("name")
    budget = (recipe.get("budget") or {}).get("max_generated_tokens")
    rows = []
    for record in store.records():
        usage = record.get("usage") or {}
        answer = record.get("answer")
        row: dict[str, Any] = {
            "doc_id": int(record["position"]),
            "doc": {"id": record["problem_id"], "question": record.get("question")},
            "target": record.get("reference"),
            "resps": [c.get("answer") for c in record.get("candidates") or []],
            "filtered_resps": [answer],
            "problem_id": record["problem_id"],
            "answer": answer,
            "correct": record.get("correct"),
            "error": record.get("error"),
            **{name: usage.get(name) for name in USAGE_FIELDS},
            "latency": record.get("latency"),
            "strategy": strategy,
            "budget": budget,
            "run": str(store.folder),
        }
        rows.append(row)
    return rows


def write_export(stores: Sequence[ResultStore], out: Path, *, format: ExportFormat) -> int:
    """Write every store's rows to ``out``; returns the number of rows."""
    rows = [row for store in stores for row in export_rows(store)]
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "jsonl":
        with out.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return len(rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BranchwiseError(
            "--format parquet needs pyarrow: pip install 'branchwise[parquet]'"
        ) from None
    table = pa.Table.from_pylist(rows, schema=_schema(pa))
    pq.write_table(table, out)
    return len(rows)


def _schema(pa: Any) -> Any:
    """Fixed column types, so a run whose every answer is missing still writes strings."""
    number = pa.float64()
    return pa.schema(
        [
            ("doc_id", pa.int64()),
            ("doc", pa.struct([("id", pa.string()), ("question", pa.string())])),
            ("target", pa.string()),
            ("resps", pa.list_(pa.string())),
            ("filtered_resps", pa.list_(pa.string())),
            ("problem_id", pa.string()),
            ("answer", pa.string()),
            ("correct", pa.bool_()),
            ("error", pa.string()),
            *[(name, number) for name in USAGE_FIELDS],
            ("latency", number),
            ("strategy", pa.string()),
            ("budget", pa.int64()),
            ("run", pa.string()),
        ]
    )


def export_command(dirs: Sequence[Path], out: Path | None, format: ExportFormat) -> int:
    """``branchwise export``: the rows of every run under ``dirs`` (sweeps included)."""
    target = out or Path(f"samples.{format}")
    stores = open_stores(list(dirs))
    try:
        count = write_export(stores, target, format=format)
    finally:
        for store in stores:
            store.close()
    print(f"export: {count} rows to {target}")
    return 0

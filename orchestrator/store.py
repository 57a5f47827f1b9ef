"""The results store: one SQLite database (WAL mode) per run, shared by every writer.

A store is a folder holding ``results.sqlite`` (and the run's ``engine.log``). Tables::

    meta     key, value                      format = branchwise-results, schema version
    run      recipe JSON, recipe fingerprint, dataset path, dataset content hash and size,
             created, branchwise version      (one row)
    problem  problem_id (primary key), position, question hash, question text, status
             (claimed | done | failed), owner, heartbeat, attempts, answer, node_id,
             reference, correct, usage JSON, detail JSON, candidates JSON (every finished
             sample's answer), subsets JSON (the answer from the first N samples), lending JSON,
             latency, error, graph JSON (with --traces), finished time

Writers coordinate through the ``problem`` table, so several processes (the CLI twice, the
workers of a fleet executor, a strategy server) can fill one store and each problem is stored
once: a writer *claims* a problem before it runs it (in one ``BEGIN IMMEDIATE`` transaction:
a problem is free if it has no row, failed before, or its claim is stale: the owner's
heartbeat is older than ``stale_after`` or, on this host, the owner's process is gone). A
result is written only by the claim's owner and never over a ``done`` row. Every commit is
durable (``synchronous=FULL``), so a killed run loses at most the problems in flight, and
SQLite's journal makes a torn write impossible.

Opening refuses, with a one-line reason: a path that is a file, a folder holding other
things than a store, a database that is not a results store, and (to resume) a store made by
a different recipe or from a different dataset. A damaged database (corrupt pages) is a
:class:`StoreError` naming the file wherever it shows; a write that fails mid-run (disk full,
an I/O error, text SQLite cannot encode) is a :class:`StoreFault`, raised at once so the run
ends instead of waiting on a result that can never be stored. Readers (``read_only=True``)
take no write lock and need no write access, so a store on read-only media can be read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from branchwise.core.errors import StoreError, StoreFault
from branchwise.core.problem import Problem
from branchwise.orchestrator.results import ProblemResult

DB_NAME = "results.sqlite"
FORMAT = "branchwise-results"
SCHEMA_VERSION = "2"  # 2: the question text (1 is upgraded in place when opened)
_OWN_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", "engine.log"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    recipe_json TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    dataset_path TEXT NOT NULL,
    dataset_hash TEXT NOT NULL,
    dataset_size INTEGER NOT NULL,
    created TEXT NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS problem (
    problem_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    question_hash TEXT NOT NULL,
    question TEXT,
    status TEXT NOT NULL CHECK (status IN ('claimed', 'done', 'failed')),
    owner TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    answer TEXT,
    node_id TEXT,
    reference TEXT,
    correct INTEGER,
    usage TEXT,
    detail TEXT,
    candidates TEXT,
    subsets TEXT,
    lending TEXT,
    latency REAL,
    error TEXT,
    graph TEXT,
    finished REAL
);
"""


@dataclass(frozen=True)
class RunInfo:
    """What a store says about the run it holds."""

    recipe: dict[str, Any]
    fingerprint: str
    dataset_path: str
    dataset_hash: str
    dataset_size: int
    created: str
    version: str


@dataclass(frozen=True)
class DatasetIdentity:
    """A dataset's path and content hash (sha256 of its bytes, or of the questions given)."""

    path: str
    hash: str
    size: int

    @classmethod
    def of_file(cls, path: Path) -> DatasetIdentity:
        data = path.read_bytes()
        return cls(str(path.resolve()), hashlib.sha256(data).hexdigest(), len(data))

    @classmethod
    def of_questions(cls, questions: Sequence[str]) -> DatasetIdentity:
        text = "\n".join(questions)
        return cls("<--question>", hashlib.sha256(text.encode()).hexdigest(), len(text))


def question_hash(question: str) -> str:
    return hashlib.sha256(question.encode()).hexdigest()[:16]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("branchwise")
    except PackageNotFoundError:
        return "unknown"


def is_store(path: Path) -> bool:
    return (path / DB_NAME).is_file()


class ResultStore:
    """One run's results in ``folder/results.sqlite``; safe for several writers at once."""

    def __init__(
        self, folder: str | Path, *, create: bool = False, read_only: bool = False
    ) -> None:
        """Open an existing store (``create``: or make one in a new or empty folder).

        ``read_only``: only read it (summaries, reports, traces): no lock is taken and no
        file written, so a store on read-only media or of another user opens.
        """
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        _check_folder(self.folder, create=create and not read_only)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if read_only:
            self._db = _open_read_only(self.path)
            with self._guard("reading the store"):
                self._check_format()
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            # Check (or create) the schema under the write lock, so two writers opening a new
            # folder at once agree; nothing is written to a file that is not a store.
            self._retry_locked(lambda: self._open_schema(create))
            # WAL only once the file is known to be a store. Switching needs the file alone,
            # and SQLite answers "locked" at once (no busy wait) while others open it: retry.
            self._retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.OperationalError as exc:
            if _is_read_only(exc) or not _writable(self.path):
                raise StoreError(
                    f"{self.path}: read-only, cannot run into it ({exc}); to read the results, use "
                    "summary, report, compare or trace, which open it read-only"
                ) from None
            raise StoreFault(f"{self.path}: cannot open the results store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            if _is_damaged(exc):
                raise _damaged(self.path, exc) from None
            raise StoreError(f"{self.path}: not a Branchwise results store ({exc})") from None

    @contextlib.contextmanager
    def _guard(self, action: str, *, writing: bool = False) -> Iterator[None]:
        """Turn a failure of SQLite (or of encoding text for it) into one line naming it."""
        kept = "; finished problems are kept, rerun to resume" if writing else ""
        try:
            yield
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise StoreFault(
                f"{self.path}: {action} failed: text holds {bad!r}, which is not valid "
                f"Unicode ({exc.reason}); nothing of it was stored{kept}"
            ) from None
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a stored JSON that is garbled
            if isinstance(exc, ValueError | sqlite3.DataError) or _is_damaged(exc):
                raise _damaged(self.path, exc) from None
            raise StoreFault(f"{self.path}: {action} failed: {_short(exc)}{kept}") from None

    def _open_schema(self, create: bool) -> None:
        with self._write() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if not tables and create:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", FORMAT), ("schema_version", SCHEMA_VERSION)],
                )
            else:
                self._upgrade(db)
                self._check_format()

    @staticmethod
    def _retry_locked(step: Callable[[], object], seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                step()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Schema 1 -> 2: add the question column (empty for problems stored before)."""
        try:
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError:
            return  # not a store: _check_format says so
        if version is not None and version[0] == "1":
            db.execute("ALTER TABLE problem ADD COLUMN question TEXT")
            db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

    def _check_format(self) -> None:
        try:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            rows = {}
        if rows.get("format") != FORMAT:
            raise StoreError(f"{self.path}: not a Branchwise results store; nothing written")
        if rows.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: results store schema {rows.get('schema_version')}, this "
                f"branchwise reads schema {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its start."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            # a failed COMMIT (disk full) can leave the transaction open; a failed ROLLBACK
            # must not hide the error that caused it
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    # -- the run ------------------------------------------------------------------------

    def run_info(self) -> RunInfo | None:
        with self._guard("reading the run"):
            row = self._db.execute("SELECT * FROM run WHERE id = 1").fetchone()
        if row is None:
            return None
        return RunInfo(
            recipe=json.loads(row["recipe_json"]),
            fingerprint=row["fingerprint"],
            dataset_path=row["dataset_path"],
            dataset_hash=row["dataset_hash"],
            dataset_size=row["dataset_size"],
            created=row["created"],
            version=row["version"],
        )

    def begin_run(
        self, *, recipe: dict[str, Any], fingerprint: str, dataset: DatasetIdentity
    ) -> RunInfo:
        """Record the run, or check that this run is the one the store holds."""
        with self._guard("recording the run", writing=True), self._write() as db:
            row = db.execute("SELECT fingerprint FROM run WHERE id = 1").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO run VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        json.dumps(recipe, sort_keys=True, default=str),
                        fingerprint,
                        dataset.path,
                        dataset.hash,
                        dataset.size,
                        datetime.now(UTC).isoformat(timespec="seconds"),
                        _version(),
                    ),
                )
        info = self.run_info()
        assert info is not None
        if info.fingerprint != fingerprint:
            raise StoreError(
                f"{self.folder}: holds results of a different recipe (fingerprint "
                f"{info.fingerprint}, this recipe is {fingerprint}); resuming would mix two "
                "runs. Use another --out folder."
            )
        if info.dataset_hash != dataset.hash:
            raise StoreError(
                f"{self.folder}: was made from dataset {info.dataset_path} "
                f"(sha256 {info.dataset_hash[:12]}), this run reads {dataset.path} "
                f"(sha256 {dataset.hash[:12]}); the problems differ. Use another --out folder."
            )
        return info

    # -- claims -------------------------------------------------------------------------

    def check_questions(self, problems: Sequence[Problem]) -> None:
        """Refuse if a stored problem id now holds a different question."""
        with self._guard("reading the problems"):
            stored = dict(self._db.execute("SELECT problem_id, question_hash FROM problem"))
        for problem in problems:
            old = stored.get(problem.id)
            if old is None:
                continue
            with self._guard(f"checking problem {problem.id!r}"):
                now = question_hash(problem.question)
            if old != now:
                raise StoreError(
                    f"{self.folder}: problem {problem.id!r} was stored for a different "
                    "question; the dataset changed. Use another --out folder."
                )

    def claim(self, problem: Problem, position: int, *, stale_after: float = 120.0) -> bool:
        """Take ``problem`` for this writer; False if it is done or another writer runs it."""
        now = time.time()
        with self._guard(f"claiming problem {problem.id!r}", writing=True), self._write() as db:
            row = db.execute(
                "SELECT status, owner, heartbeat FROM problem WHERE problem_id = ?",
                (problem.id,),
            ).fetchone()
            if row is not None:
                if row["status"] == "done":
                    return False
                if (
                    row["status"] == "claimed"
                    and row["owner"] != self.owner
                    and not _claim_is_stale(row["owner"], row["heartbeat"], now, stale_after)
                ):
                    return False
            db.execute(
                "INSERT INTO problem (problem_id, position, question_hash, question, status, "
                "owner, heartbeat, attempts) VALUES (?, ?, ?, ?, 'claimed', ?, ?, 1) "
                "ON CONFLICT (problem_id) DO UPDATE SET status = 'claimed', "
                "owner = excluded.owner, heartbeat = excluded.heartbeat, "
                "question = excluded.question, attempts = problem.attempts + 1",
                (
                    problem.id,
                    position,
                    question_hash(problem.question),
                    problem.question,
                    self.owner,
                    now,
                ),
            )
        return True

    def heartbeat(self) -> None:
        """Refresh this writer's claims (call every few seconds while problems run)."""
        with self._guard("refreshing claims", writing=True), self._write() as db:
            db.execute(
                "UPDATE problem SET heartbeat = ? WHERE owner = ? AND status = 'claimed'",
                (time.time(), self.owner),
            )

    def release(self) -> None:
        """Give back claims this writer did not finish (e.g. on Ctrl-C)."""
        with self._guard("releasing claims", writing=True), self._write() as db:
            db.execute(
                "UPDATE problem SET status = 'failed', error = COALESCE(error, "
                "'interrupted before it finished') WHERE owner = ? AND status = 'claimed'",
                (self.owner,),
            )

    def finish(
        self,
        result: ProblemResult,
        *,
        candidates: list[dict[str, Any]],
        with_graph: bool,
        subsets: dict[int, dict[str, Any]] | None = None,
    ) -> bool:
        """Store a claimed problem's result; False if another writer stored it first."""
        graph = None
        if with_graph and result.graph is not None:
            graph = json.dumps(result.graph.to_dict())
        with (
            self._guard(f"storing problem {result.problem_id!r}", writing=True),
            self._write() as db,
        ):
            cursor = db.execute(
                "UPDATE problem SET status = ?, answer = ?, node_id = ?, reference = ?, "
                "correct = ?, usage = ?, detail = ?, candidates = ?, subsets = ?, lending = ?, "
                "latency = ?, "
                "error = ?, graph = ?, finished = ?, heartbeat = NULL "
                "WHERE problem_id = ? AND owner = ? AND status != 'done'",
                (
                    "failed" if result.error else "done",
                    result.answer,
                    result.node_id,
                    result.reference,
                    None if result.correct is None else int(result.correct),
                    json.dumps(result.usage),
                    json.dumps(result.detail, default=str),
                    json.dumps(candidates),
                    json.dumps(subsets or {}),
                    json.dumps(result.lending) if result.lending else None,
                    result.latency,
                    result.error,
                    graph,
                    time.time(),
                    result.problem_id,
                    self.owner,
                ),
            )
            return cursor.rowcount == 1

    # -- reading ------------------------------------------------------------------------

    def done_ids(self) -> set[str]:
        with self._guard("reading the problems"):
            rows = self._db.execute("SELECT problem_id FROM problem WHERE status='done'")
            return {r[0] for r in rows}

    def lending(self, problem_id: str) -> dict[str, int]:
        """What a stored problem lent to and borrowed from its run's pool."""
        with self._guard("reading the problems"):
            row = self._db.execute(
                "SELECT lending FROM problem WHERE problem_id = ?", (problem_id,)
            ).fetchone()
        stored = json.loads(row[0]) if row is not None and row[0] else {}
        return {key: int(stored.get(key, 0)) for key in ("lent", "borrowed")}

    def records(self, *, with_graph: bool = False) -> list[dict[str, Any]]:
        """Every finished or failed problem, in dataset order, as plain dicts."""
        with self._guard("reading the problems"):
            rows = self._db.execute(
                "SELECT * FROM problem WHERE status != 'claimed' ORDER BY position"
            ).fetchall()
        out = []
        for row in rows:
            record = dict(row)
            with self._guard("reading the problems"):
                for key in ("usage", "detail", "candidates", "subsets", "lending"):
                    record[key] = json.loads(record[key]) if record[key] else {}
            if record["candidates"] == {}:
                record["candidates"] = []
            record["correct"] = None if record["correct"] is None else bool(record["correct"])
            graph = record.pop("graph")
            if with_graph:
                with self._guard("reading the graphs"):
                    record["graph"] = json.loads(graph) if graph else None
            out.append(record)
        return out

    def graph(self, problem_id: str) -> dict[str, Any] | None:
        with self._guard("reading the problems"):
            row = self._db.execute(
                "SELECT graph FROM problem WHERE problem_id = ?", (problem_id,)
            ).fetchone()
        if row is None:
            raise StoreError(f"{self.folder}: no problem {problem_id!r} in this store")
        if row[0] is None:
            return None
        with self._guard("reading the graph"):
            graph: dict[str, Any] = json.loads(row[0])
        return graph

    def claimed_elsewhere(self, *, stale_after: float = 120.0) -> set[str]:
        """Problems another writer is running now (claimed, its claim not stale)."""
        now = time.time()
        with self._guard("reading the problems"):
            rows = self._db.execute(
                "SELECT problem_id, owner, heartbeat FROM problem "
                "WHERE status = 'claimed' AND owner != ?",
                (self.owner,),
            ).fetchall()
        return {
            r["problem_id"]
            for r in rows
            if not _claim_is_stale(r["owner"], r["heartbeat"], now, stale_after)
        }

    def counts(self) -> dict[str, int]:
        with self._guard("reading the problems"):
            rows = self._db.execute("SELECT status, COUNT(*) FROM problem GROUP BY status")
            return dict(rows)


def _check_folder(folder: Path, *, create: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise StoreError(
            f"{folder}: is a file, not a results folder; --out names a folder (nothing written)"
        )
    if (folder / DB_NAME).exists():
        return
    if not create:
        raise StoreError(f"{folder}: no results store here ({DB_NAME} missing)")
    if folder.exists():
        others = sorted(p.name for p in folder.iterdir() if p.name not in _OWN_FILES)
        if others:
            raise StoreError(
                f"{folder}: not a results folder (holds {', '.join(others[:3])}); "
                "give --out a new or empty folder (nothing written)"
            )


def _claim_is_stale(owner: str | None, heartbeat: float | None, now: float, after: float) -> bool:
    if owner is None or heartbeat is None or now - heartbeat > after:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # its process died (SIGKILL, crash): take it over at once
        except PermissionError:
            return False
    return False


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes: ``mode=ro``, or ``immutable`` where even the WAL's
    shared-memory file cannot be made (read-only media, another user's folder)."""
    uri = path.resolve().as_uri()
    mode = "mode=ro" if _writable(path) else "mode=ro&immutable=1"
    try:
        db = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=60)
        db.row_factory = sqlite3.Row
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        if _is_damaged(exc):
            raise _damaged(path, exc) from None
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise StoreError(f"{path}: not a Branchwise results store ({exc})") from None
        raise StoreError(f"{path}: cannot read the results store ({exc})") from None
    return db


def _writable(path: Path) -> bool:
    """Whether this process may write the store's file and its folder (read-only media are
    asked of the file system itself: access(2) does not always see a read-only mount)."""
    with contextlib.suppress(OSError):
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return False
    if not os.access(path.parent, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def _is_damaged(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    return (
        name == "SQLITE_CORRUPT"
        or "malformed" in text
        or "Could not decode" in text  # a text column whose bytes were overwritten
    )


def _short(exc: Exception, limit: int = 160) -> str:
    """An error's text cut to one readable line (SQLite may quote a whole column)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_read_only(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY")


def _damaged(path: Path, exc: Exception) -> StoreError:
    return StoreError(
        f"{path}: the results store is damaged ({_short(exc, 80)}); copy the folder aside, and "
        "`sqlite3 results.sqlite .recover` may save the finished problems"
    )

"""The CLI and the results store: resume, refusals, two writers, exit codes, summaries."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from branchwise.core.errors import EngineError
from branchwise.core.problem import Problem
from branchwise.orchestrator.cli import main
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.types import GenerationRequest, GenerationResult
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.store import DatasetIdentity, ResultStore, StoreError
from tests.conftest import make_problem

REPO = Path(__file__).resolve().parents[2]


def _dataset(tmp_path: Path, count: int, name: str = "problems.jsonl") -> Path:
    data = tmp_path / name
    lines = []
    for i in range(count):
        p = make_problem(i)
        lines.append(
            json.dumps(
                {"id": p.id, "question": p.question, "answer": p.reference, "solution": p.solution}
            )
        )
    data.write_text("\n".join(lines) + "\n")
    return data


def _recipe(tmp_path: Path, dataset: Path, *, extra: str = "") -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"engine: {{kind: scripted, error_rate: 0.3, solutions: {dataset.name}}}\n"
        "strategy: {name: self_consistency, n: 4}\n"
        "sampling: {max_tokens: 64}\n"
        f"dataset: {{path: {dataset.name}}}\n" + extra
    )
    return recipe


def _rows(out: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(out / "results.sqlite", timeout=30) as db:
        return list(db.execute("SELECT problem_id, status, attempts FROM problem ORDER BY 1"))


def _done_count(out: Path) -> int:
    """Problems done so far, while a writer may still be creating the store."""
    try:
        return sum(1 for r in _rows(out) if r[1] == "done")
    except sqlite3.OperationalError:
        return 0


def test_eval_resumes_without_repeating_and_summary_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 6))
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--limit", "3", "--quiet"]) == 0
    assert [r[0] for r in _rows(out)] == ["p0", "p1", "p2"]
    capsys.readouterr()
    assert main(["run", str(recipe), "--out", str(out)]) == 0  # `run` is `eval`
    printed = capsys.readouterr().out
    assert "resuming: 3 problems already" in printed
    assert [(r[0], r[1], r[2]) for r in _rows(out)] == [(f"p{i}", "done", 1) for i in range(6)]
    assert "problems: 6  failed: 0" in printed
    assert main(["summary", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "accuracy: " in summary and "95% CI" in summary and "pass@k: @1" in summary
    assert _rows(out) == [(f"p{i}", "done", 1) for i in range(6)]  # nothing reran
    assert main(["summary", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["problems"] == 6 and set(data["accuracy_at"]) == {"1", "2", "4"}


def test_a_file_that_is_not_a_store_is_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path, 2)
    recipe = _recipe(tmp_path, dataset)
    before = dataset.read_bytes()
    assert main(["eval", str(recipe), "--out", str(dataset), "--quiet"]) == 2
    assert "is a file, not a results folder" in capsys.readouterr().err
    assert dataset.read_bytes() == before
    # a folder of other things
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["eval", str(recipe), "--out", str(other), "--quiet"]) == 2
    assert "not a results folder (holds notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    # a results.sqlite that is some other database, or not a database at all
    for content in (b"not sqlite at all\n" * 50, None):
        foreign = tmp_path / f"foreign{content is None}"
        foreign.mkdir()
        db_file = foreign / "results.sqlite"
        if content is None:
            with sqlite3.connect(db_file) as db:
                db.execute("CREATE TABLE t (x)")
        else:
            db_file.write_bytes(content)
        snapshot = db_file.read_bytes()
        assert main(["eval", str(recipe), "--out", str(foreign), "--quiet"]) == 2
        assert "not a Branchwise results store" in capsys.readouterr().err
        assert db_file.read_bytes() == snapshot


def test_resume_refuses_a_changed_dataset_or_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path, 4)
    recipe = _recipe(tmp_path, dataset)
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--limit", "2", "--quiet"]) == 0
    # concurrency and the dataset slice are not part of the run's identity
    assert main(["eval", str(recipe), "--out", str(out), "--concurrency", "3", "--quiet"]) == 0
    before = _rows(out)
    assert len(before) == 4
    capsys.readouterr()
    lines = dataset.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["question"] += " Then add 1."
    dataset.write_text("\n".join([lines[0], json.dumps(edited), *lines[2:]]) + "\n")
    assert main(["eval", str(recipe), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "was made from dataset" in err and "the problems differ" in err
    _dataset(tmp_path, 4)  # restore
    assert main(["eval", str(recipe), "--out", str(out), "--set", "strategy.n=3"]) == 2
    assert "holds results of a different recipe" in capsys.readouterr().err
    # another split of the same name is another file content: refused too
    split = _dataset(tmp_path, 5, name="test.jsonl")
    args = ["eval", str(recipe), "--out", str(out), "--dataset", str(split), "--quiet"]
    assert main(args) == 2
    assert _rows(out) == before


def test_a_changed_question_under_an_old_id_is_refused(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s", create=True)
    problem = Problem(id="a", question="1+1?", reference="2")
    assert store.claim(problem, 0)
    store.check_questions([problem])
    with pytest.raises(StoreError, match="different question"):
        store.check_questions([Problem(id="a", question="2+2?")])


def test_a_dead_writers_claim_is_taken_over_and_each_problem_stored_once(tmp_path: Path) -> None:
    problems = [Problem(id=f"p{i}", question=f"q{i}", reference="1") for i in range(3)]
    first = ResultStore(tmp_path / "s", create=True)
    second = ResultStore(tmp_path / "s")
    assert first.claim(problems[0], 0)
    assert not second.claim(problems[0], 0)  # its owner is alive and beating
    first.owner = f"{first.owner.split(':')[0]}:999999999:dead"  # as if SIGKILLed
    with sqlite3.connect(first.path) as db:
        db.execute("UPDATE problem SET owner = ?", (first.owner,))
    assert second.claim(problems[0], 0)  # a dead process's claim is stale at once
    ok = ProblemResult("p0", "1", reference="1", correct=True)
    assert second.finish(ok, candidates=[], with_graph=False)
    assert not first.finish(ok, candidates=[], with_graph=False)  # no longer its claim
    assert not first.claim(problems[0], 0)  # done is done
    assert [(r["problem_id"], r["attempts"]) for r in second.records()] == [("p0", 2)]


def _writer(recipe: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "branchwise.orchestrator.cli",
            "eval",
            str(recipe),
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_two_writers_on_one_store_share_the_problems(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, 16)
    slow = "engine: {kind: scripted, error_rate: 0.3, seconds_per_token: 0.015, solutions: "
    recipe = _recipe(tmp_path, dataset, extra="concurrency: 1\n")
    recipe.write_text(
        recipe.read_text().replace("engine: {kind: scripted, error_rate: 0.3, solutions: ", slow)
    )
    out = tmp_path / "run"
    ResultStore(out, create=True).close()
    writers = [_writer(recipe, out), _writer(recipe, out)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    rows = _rows(out)
    assert [r[0] for r in rows] == sorted(f"p{i}" for i in range(16))
    assert all(status == "done" and attempts == 1 for _, status, attempts in rows)
    with sqlite3.connect(out / "results.sqlite") as db:
        owners = {o.split(":")[1] for (o,) in db.execute("SELECT owner FROM problem")}
    assert len(owners) == 2  # both writers stored problems


def test_sigkill_mid_run_then_resume_stores_each_problem_once(tmp_path: Path) -> None:
    """A killed writer (the scripted stand-in; tests/integration repeats it on vLLM)."""
    dataset = _dataset(tmp_path, 16)
    recipe = _recipe(tmp_path, dataset, extra="concurrency: 2\n")
    text = recipe.read_text().replace(
        "error_rate: 0.3,", "error_rate: 0.3, seconds_per_token: 0.003,"
    )
    recipe.write_text(text)
    reference = tmp_path / "uninterrupted"
    assert main(["eval", str(recipe), "--out", str(reference), "--quiet"]) == 0
    out = tmp_path / "run"
    writer = _writer(recipe, out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "results.sqlite").exists() and _done_count(out) >= 4:
            break
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    killed_at = [r for r in _rows(out) if r[1] == "done"]
    assert 4 <= len(killed_at) < 16
    assert main(["eval", str(recipe), "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert [r[0] for r in rows] == sorted(f"p{i}" for i in range(16))
    assert all(status == "done" for _, status, _ in rows)
    with ResultStore(out) as a, ResultStore(reference) as b:
        assert comparable(a.records()) == comparable(b.records())
    # answers, correctness, samples and generated tokens equal an uninterrupted run


def comparable(records: list[dict[str, object]]) -> list[dict[str, object]]:
    """A record without what timing decides (wall time, owner, prefix-cache hits)."""
    timing = ("owner", "heartbeat", "latency", "finished", "attempts")
    out = []
    for record in records:
        kept = {k: v for k, v in record.items() if k not in timing}
        usage = dict(record["usage"])  # type: ignore[call-overload]
        for key in ("seconds", "cached_prompt_tokens"):
            usage.pop(key, None)
        kept["usage"] = usage
        out.append(kept)
    return out


class _FailsSome(ScriptedEngine):
    failing: tuple[str, ...] = ()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.affinity in self.failing or "*" in self.failing:
            raise EngineError("the engine is gone")
        return await super().generate(request)


def _failing(monkeypatch: pytest.MonkeyPatch, ids: tuple[str, ...]) -> None:
    import branchwise.orchestrator.engines.scripted as scripted

    monkeypatch.setattr(_FailsSome, "failing", ids)
    monkeypatch.setattr(scripted, "ScriptedEngine", _FailsSome)


def test_failures_count_as_wrong_and_set_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 4))
    _failing(monkeypatch, ("p1",))
    assert main(["eval", str(recipe), "--out", str(tmp_path / "a"), "--quiet"]) == 1
    out = capsys.readouterr()
    assert "problems: 4  failed: 1" in out.out
    assert "/4 = " in out.out  # the failed problem stays in the denominator
    assert "failed x1: EngineError: the engine is gone" in out.out
    assert main(["summary", str(tmp_path / "a")]) == 1
    _failing(monkeypatch, ("*",))
    capsys.readouterr()
    assert main(["eval", str(recipe), "--out", str(tmp_path / "b")]) == 3
    err = capsys.readouterr().err
    assert err.count("failed: EngineError: the engine is gone") == 1  # said once, not 4 times


def test_a_scorer_that_fails_everywhere_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = _dataset(tmp_path, 3)
    recipe = _recipe(tmp_path, dataset)
    best_of_n = (
        "strategy: {name: best_of_n, n: 4, scorer: mean_logprob}\nscorers: [{kind: mean_logprob}]"
    )
    recipe.write_text(
        recipe.read_text().replace("strategy: {name: self_consistency, n: 4}", best_of_n)
    )
    # without logprobs the recipe is refused up front, in one line
    assert main(["eval", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "reads token logprobs, but sampling.logprobs is None" in err
    assert "(got {" not in err and len(err.strip().splitlines()) == 1

    from branchwise.core.graph import Score
    from branchwise.rewards.intrinsic import MeanLogprob

    async def broken(self: object, problem: object, candidates: list[object]) -> list[Score]:
        return [Score(value=None, error="the scorer's model is missing") for _ in candidates]

    monkeypatch.setattr(MeanLogprob, "score", broken)
    recipe.write_text(recipe.read_text().replace("max_tokens: 64", "max_tokens: 64, logprobs: 0"))
    assert main(["eval", str(recipe)]) == 0
    err = capsys.readouterr().err
    assert err.count("scorer 'mean_logprob' failed on every node it scored") == 1
    assert "the scorer's model is missing" in err


def test_compare_says_whether_the_difference_is_significant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 8))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["eval", str(recipe), "--out", str(a), "--quiet"]) == 0
    assert main(["eval", str(recipe), "--out", str(b), "--set", "strategy.n=1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "shared problems: 8" in out and "McNemar exact test: p = " in out
    assert "significant at 5%" in out


def test_compare_pairs_two_sweeps_budget_by_budget_and_refuses_mismatches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 6))
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(["eval", str(recipe), "--out", str(a), "--budgets", "40,400", "--quiet"]) == 0
    assert main(["eval", str(recipe), "--out", str(b), "--budgets", "40,400", "--quiet",
                 "--set", "strategy.n=1"]) == 0  # fmt: skip
    assert main(["eval", str(recipe), "--out", str(c), "--budgets", "400", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [x["budget"] for x in report["comparisons"]] == ["budget-40", "budget-400"]
    for x in report["comparisons"]:
        assert x["shared"] == 6 and x["ci95"][0] <= x["difference"] <= x["ci95"][1]
        assert x["p_holm"] >= x["p_value"]
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.count("McNemar exact test") == 2 and "Holm-corrected" in out
    assert "paired bootstrap interval" in out
    # a sweep is never silently cut to one budget: refused in one line
    assert main(["compare", str(a), str(c)]) == 2
    err = capsys.readouterr().err
    assert "compare sweeps over the same budgets" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(a), str(c / "budget-400")]) == 2
    assert "name one budget folder" in capsys.readouterr().err
    assert main(["compare", str(a / "budget-400"), str(c / "budget-400")]) == 0
    assert "Holm" not in capsys.readouterr().out  # one comparison: nothing to correct
    assert main(["summary", str(a), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["problems"] for line in lines] == [6, 6]


def test_budget_sweep_writes_one_store_per_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 3))
    out = tmp_path / "sweep"
    assert main(["eval", str(recipe), "--out", str(out), "--budgets", "40,400", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["budget-40", "budget-400"]
    capsys.readouterr()
    assert main(["summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("budget-40:") < printed.index("budget-400:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit: must be at least 1, got 0"),
        (["--limit", "-1"], "--limit: must be at least 1, got -1"),
        (["--set", "strategy.n"], "expected KEY=VALUE"),
        (["--budgets", "0"], "must be at least 1"),
    ],
)
def test_bad_arguments_end_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 2))
    with pytest.raises(SystemExit) if args[0] != "--set" else _no_raise():
        code = main(["eval", str(recipe), *args])
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_non_utf8_recipe_and_dataset_end_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"engine: {kind: scripted}\nstrategy: {name: \xff\xfe}\n")
    assert main(["validate", str(bad)]) == 2
    data = _dataset(tmp_path, 2)
    data.write_bytes(data.read_bytes() + b'{"question": "\xff"}\n')
    assert main(["eval", str(_recipe(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "Traceback" not in err


def test_version_and_listings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert main(["strategies"]) == 0
    assert main(["scorers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("branchwise ")
    assert "self_consistency: " in out and "    n (default 16)" in out


def test_store_records_the_run_identity(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, 2)
    recipe = _recipe(tmp_path, dataset)
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--quiet", "--seed", "7"]) == 0
    with ResultStore(out) as store:
        info = store.run_info()
    assert info is not None
    assert info.recipe["seed"] == 7 and info.recipe["strategy"]["name"] == "self_consistency"
    assert info.dataset_hash == DatasetIdentity.of_file(dataset).hash
    assert info.dataset_path == str(dataset.resolve())


def test_recipe_fingerprint_ignores_plumbing_only() -> None:
    from branchwise.orchestrator.recipe import parse_recipe

    def fingerprint(**changes: object) -> str:
        data: dict[str, object] = {
            "engine": {"kind": "openai", "base_urls": ["http://a:1"], "model": "m"},
            "strategy": {"name": "self_consistency", "n": 4},
            "seed": 1,
        }
        data.update(changes)
        return parse_recipe(data).fingerprint()

    base = fingerprint()
    moved = {"kind": "openai", "base_urls": ["http://b:2", "http://c:3"], "model": "m"}
    assert fingerprint(engine=moved, concurrency=7) == base
    assert fingerprint(seed=2) != base
    assert fingerprint(strategy={"name": "self_consistency", "n": 5}) != base
    other_model = {"kind": "openai", "base_urls": ["http://a:1"], "model": "other"}
    assert fingerprint(engine=other_model) != base


def test_store_keeps_what_a_problem_lent_for_a_resumed_run(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s", create=True)
    for index, pid in enumerate("ab"):
        assert store.claim(Problem(id=pid, question=pid), index)
    lent = ProblemResult("a", "3", lending={"lent": 2, "borrowed": 0})
    assert store.finish(lent, candidates=[], with_graph=False)
    assert store.finish(ProblemResult("b", "4"), candidates=[], with_graph=False)
    store.close()
    again = ResultStore(tmp_path / "s")
    assert again.lending("a") == {"lent": 2, "borrowed": 0}
    assert again.lending("b") == {"lent": 0, "borrowed": 0}  # never lent: nothing stored


def test_bad_dataset_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path, 2)
    data.write_text(data.read_text() + "{not json}\n")
    recipe = _recipe(tmp_path, data)
    assert main(["eval", str(recipe)]) == 2
    assert "problems.jsonl:3: not valid JSON" in capsys.readouterr().err


def test_moving_the_reward_model_server_keeps_the_fingerprint() -> None:
    from branchwise.orchestrator.recipe import parse_recipe

    def fingerprint(**prm: object) -> str:
        scorer = {"kind": "prm", "model": "prm", "backend": "http", "base_url": "http://a:1"}
        return parse_recipe(
            {
                "engine": {"kind": "scripted"},
                "strategy": {"name": "beam_search", "scorer": "prm"},
                "scorers": [{**scorer, **prm}],
            }
        ).fingerprint()

    base = fingerprint()
    assert fingerprint(base_url="http://b:2", max_batch=8) == base
    assert fingerprint(label=0) != base


def test_validate_refuses_what_would_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    dataset = _dataset(tmp_path, 2)
    cases = {
        "engine: {kind: vllm, model: models/policy}\n": "nor a model in the Hugging Face cache",
        "engine: {kind: vllm, model: ../nowhere/policy}\n": "does not exist",
        "dataset: {path: missing.jsonl}\n": "cannot read dataset",
        "answer: {method: regex, pattern: '\\\\d+'}\n": "has no group",
        "budget: {max_generated_tokens: 1}\n": "less than one completion",
    }
    for line, message in cases.items():
        text = _recipe(tmp_path, dataset).read_text()
        key = line.split(":")[0]
        kept = [row for row in text.splitlines() if not row.startswith(key + ":")]
        (tmp_path / "r.yaml").write_text("\n".join(kept) + "\n" + line)
        assert main(["validate", str(tmp_path / "r.yaml")]) == 2, line
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    recipe = _recipe(tmp_path, _dataset(tmp_path, 6))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    writer = subprocess.Popen(
        [sys.executable, "-m", "branchwise", "eval", str(recipe)],
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert writer.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    assert "6/6 [" in text and "problem/s" in text and "acc=" in text and "tok_s=" in text


def test_writers_opening_a_new_store_at_once_agree(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "new"

    def open_store(_: int) -> str:
        with ResultStore(folder, create=True) as store:
            return store.owner

    with ThreadPoolExecutor(8) as pool:
        owners = list(pool.map(open_store, range(8)))
    assert len(set(owners)) == 8
    with sqlite3.connect(folder / "results.sqlite") as db:
        assert dict(db.execute("SELECT key, value FROM meta"))["format"] == "branchwise-results"


@pytest.mark.parametrize(
    "strategy",
    [
        "{name: self_consistency, n: 8}",
        "{name: best_of_n, n: 8, scorer: check}\nscorers: [{kind: reference_steps, name: check}]",
    ],
)
def test_accuracy_at_full_n_equals_the_runs_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str
) -> None:
    recipe = _recipe(tmp_path, _dataset(tmp_path, 12))
    text = recipe.read_text().replace("{name: self_consistency, n: 4}", strategy)
    recipe.write_text(text.replace("error_rate: 0.3", "error_rate: 0.5"))
    out = tmp_path / "run"
    assert main(["eval", str(recipe), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["summary", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["accuracy_at"]) == {"1", "2", "4", "8"}
    assert data["accuracy_at"]["8"] == data["accuracy"]  # the same rule on the same samples


def test_a_torn_tail_loses_only_the_torn_commit(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial last frame in the WAL; it is ignored on open."""
    import shutil

    live = tmp_path / "live"
    store = ResultStore(live, create=True)
    problems = [Problem(id=f"p{i}", question=f"q{i}", reference="1") for i in range(3)]
    for index, problem in enumerate(problems):
        assert store.claim(problem, index)
        done = ProblemResult(problem.id, "1", reference="1", correct=True)
        assert store.finish(done, candidates=[], with_graph=False)
    # the files as a crash would leave them (the writer never closed: results are in the WAL)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in ("results.sqlite", "results.sqlite-wal"):
        shutil.copy(live / name, crashed / name)
    store.close()
    wal = crashed / "results.sqlite-wal"
    wal.write_bytes(wal.read_bytes()[:-100])  # tear the last frame (the last commit)
    with ResultStore(crashed) as reopened:
        ids = [r["problem_id"] for r in reopened.records()]
        assert ids == ["p0", "p1"]  # p2's commit was torn: it is simply not there
    with sqlite3.connect(crashed / "results.sqlite") as db:  # its writer died with the crash
        dead = f"{socket.gethostname()}:999999999:gone"
        db.execute("UPDATE problem SET owner = ?", (dead,))
    with ResultStore(crashed) as reopened:
        assert reopened.claim(problems[2], 2)  # so p2 runs again
        redo = ProblemResult("p2", "1", reference="1", correct=True)
        assert reopened.finish(redo, candidates=[], with_graph=False)
        assert [r["problem_id"] for r in reopened.records()] == ["p0", "p1", "p2"]

"""Unit tests run against a candidate program in the sandbox (the ``code_tests`` scorer).

The problem carries its tests in ``problem.metadata[tests_key]``: a list of Python snippets
(usually ``assert`` statements), or one string holding all of them. The candidate's code is
the last fenced ```python block of its text (or the raw text when it has none). A harness
runs the candidate's module, then each test in a copy of its namespace, and reports every
test as it finishes, so a candidate that hangs in test 3 still gets credit for tests 1-2.

The harness reports on a separate channel and tags each line with a per-run token it reads
from stdin before the candidate's code is loaded, so plain prints cannot fake a pass. The
sandbox protects the host; a candidate written to defeat the harness from inside the same
interpreter (walking stack frames) is outside this threat model.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, Scorer, ScorerConfig, ScorerResources
from branchwise.verifiers.sandbox import (
    SandboxLimits,
    SandboxResult,
    check_isolation,
    run_python,
)

_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)

HARNESS = """\
import json, os, sys
def _run():
    fd = int(os.environ["BRANCHWISE_REPORT_FD"])
    token = sys.stdin.readline().strip()
    def report(item):
        item["token"] = token
        os.write(fd, (json.dumps(item) + "\\n").encode())
    with open("tests.json") as handle:
        tests = json.load(handle)
    with open("solution.py") as handle:
        source = handle.read()
    namespace = {"__name__": "solution"}
    try:
        exec(compile(source, "solution.py", "exec"), namespace)
    except BaseException as exc:
        report({"event": "load", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
        return
    report({"event": "load", "ok": True})
    for index, test in enumerate(tests):
        try:
            exec(compile(test, f"test_{index}", "exec"), dict(namespace))
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            report({"event": "test", "index": index, "ok": False, "error": error})
        else:
            report({"event": "test", "index": index, "ok": True})
_run()
"""


def extract_code(text: str, how: Literal["auto", "fenced", "raw"] = "auto") -> str | None:
    """The program in a candidate's text: its last fenced block, or the raw text."""
    if how != "raw":
        blocks = _FENCE.findall(text)
        if blocks:
            return str(blocks[-1])
        if how == "fenced":
            return None
    return text if text.strip() else None


class CodeTestsConfig(ScorerConfig):
    tests_key: str = Field("tests", description="problem.metadata key holding the tests.")
    extract: Literal["auto", "fenced", "raw"] = Field(
        "auto", description="auto: last ```python block, else the raw text; fenced; raw."
    )
    value: Literal["fraction", "all"] = Field(
        "fraction", description="fraction: share of tests passed; all: 1 only if all pass."
    )
    limits: SandboxLimits = Field(
        SandboxLimits(), description="Time, memory and isolation per run (see SandboxLimits)."
    )
    max_concurrency: int = Field(2, ge=1, description="Sandboxed runs at once.")


class CodeTests(Scorer[CodeTestsConfig]):
    """Runs the problem's unit tests against each candidate program in the sandbox.

    A program that loops, exhausts memory, forks, touches the network or the file system
    outside its folder fails its tests (value 0 or a partial fraction) with the reason in
    ``Score.detail["verdict"]``; only a sandbox that cannot start marks the node failed.
    """

    config_model = CodeTestsConfig
    description = "Runs the problem's unit tests on the candidate's code in a sandbox."
    needs_answer = True

    def __init__(self, config: CodeTestsConfig, resources: ScorerResources) -> None:
        super().__init__(config, resources)
        self.cfg = config
        check_isolation(config.limits)  # refuse at the start, in one line, not per node
        self._slots = asyncio.Semaphore(config.max_concurrency)

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        tests = _tests_of(problem, self.cfg.tests_key)
        return list(await asyncio.gather(*(self._score_one(c.text, tests) for c in candidates)))

    async def _score_one(self, text: str, tests: list[str]) -> Score:
        code = extract_code(text, self.cfg.extract)
        if code is None:
            return Score(value=0.0, detail={"verdict": "no_code", "passed": 0, "total": len(tests)})
        token = secrets.token_hex(16)
        files = {"main.py": HARNESS, "solution.py": code, "tests.json": json.dumps(tests)}
        try:
            async with self._slots:
                result = await run_python(files, "main.py", self.cfg.limits, stdin=token + "\n")
        except Exception as exc:  # the sandbox itself failed: that is a scorer failure
            return Score(value=None, error=f"sandbox: {type(exc).__name__}: {exc}")
        return self._verdict(result, token, len(tests))

    def _verdict(self, result: SandboxResult, token: str, total: int) -> Score:
        mine = [r for r in result.reports if r.get("token") == token]
        load = next((r for r in mine if r.get("event") == "load"), None)
        outcomes: dict[int, bool] = {}
        for r in mine:
            index = r.get("index")
            if r.get("event") == "test" and isinstance(index, int) and index not in outcomes:
                outcomes[index] = r.get("ok") is True
        passed = sum(outcomes.values())
        errors = [str(r.get("error")) for r in mine if r.get("ok") is False]
        verdict: str
        if result.verdict != "ok":
            verdict = result.verdict
        elif load is None:
            verdict = "no_report"
        elif not load.get("ok"):
            verdict = "load_error"
        else:
            verdict = "passed" if passed == total and len(outcomes) == total else "failed"
        if result.verdict == "isolation_failed":
            return Score(value=None, error="sandbox: required isolation is not available here")
        value = passed / total if self.cfg.value == "fraction" else float(passed == total)
        if verdict != "passed" and self.cfg.value == "all":
            value = 0.0
        detail: dict[str, Any] = {
            "verdict": verdict,
            "passed": passed,
            "total": total,
            "errors": errors[:5],
            "stderr": result.stderr[-500:],
            "layers": list(result.layers),
            "seconds": round(result.seconds, 3),
        }
        return Score(value=value, detail=detail)


def _tests_of(problem: Problem, key: str) -> list[str]:
    raw = problem.metadata.get(key)
    if isinstance(raw, str) and raw.strip():
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        return list(raw)
    raise ValueError(
        f"problem {problem.id}: metadata[{key!r}] must be a test string or a list of them"
    )

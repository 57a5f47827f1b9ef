"""A bounded property-based fuzz over what users and clients hand Branchwise (issue 24):
recipes, ``--set`` values, datasets and server request bodies. Every input must end in a
documented exit code or HTTP status with at most one line of error, never a traceback, a
hang (each example has an alarm) or memory past a ceiling.

Bounded: a few dozen examples per input kind, derandomized so a run is repeatable; about
a minute in all on the scripted engine.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from branchwise.orchestrator.cli import main
from tests.unit.test_server import JSON, run, served

EXIT_CODES = {0, 1, 2, 3, 4}
STATUSES = {200, 400, 404, 413, 415}
ALARM_SECONDS = 30
MEMORY_CEILING_MB = 4096
"""Peak resident memory of the test process after every example (it holds vLLM-free
imports and the scripted engine: about 400 MB)."""

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

text = st.text(max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
KEYS = [
    "strategy.n",
    "strategy.name",
    "strategy.beam_width",
    "sampling.max_tokens",
    "sampling.temperature",
    "budget.max_generated_tokens",
    "budget.max_nodes",
    "seed",
    "concurrency",
    "engine.kind",
    "answer.method",
    "prompt.style",
    "nothing.here",
]


@contextlib.contextmanager
def alarm() -> Iterator[None]:
    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {ALARM_SECONDS} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(ALARM_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    with alarm():
        code = main(argv)
    err = capsys.readouterr().err
    assert code in EXIT_CODES, (argv, code, err)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, err
    if code == 2:
        assert len(errors) == 1, err
    event(f"exit code {code}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mb < MEMORY_CEILING_MB, peak_mb
    return code


BASE = {
    "engine": {"kind": "scripted"},
    "strategy": {"name": "self_consistency", "n": 2},
    "sampling": {"max_tokens": 16},
}


@FUZZ
@given(
    st.one_of(
        st.dictionaries(st.sampled_from([*BASE, "budget", "seed", "x"]), json_values, max_size=5),
        st.builds(lambda extra: {**BASE, **extra}, st.dictionaries(text, json_values, max_size=3)),
        st.text(max_size=200),
    )
)
def test_any_recipe_validates_or_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], data: Any
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "r.yaml"
        body = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
        recipe.write_text(body, encoding="utf-8", errors="surrogatepass")
        assert _check_cli(["validate", str(recipe), "--static"], capsys) in (0, 2)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(KEYS),
            st.one_of(
                st.sampled_from(["2", "3", "0.7", "64", "null", "[1, 2]", "{a: 1}"]),
                st.integers(min_value=-5, max_value=10**21).map(str),
                text,
            ),
        ),
        min_size=1,
        max_size=2,
    )
)
def test_any_set_value_runs_or_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], pairs: list[tuple[str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "r.yaml"
        recipe.write_text(yaml.safe_dump(BASE))
        argv = ["eval", str(recipe), "--question", "Start with 2. Add 3.", "--quiet"]
        for key, value in pairs:
            argv += ["--set", f"{key}={value}"]
        _check_cli(argv, capsys)


plain_problem = st.builds(
    lambda i, q, a: json.dumps({"id": i, "question": q, "answer": a}),
    st.one_of(text, st.integers()),
    st.text(min_size=1, max_size=60),
    st.one_of(st.none(), st.integers(), text),
)
lines = st.one_of(
    plain_problem,
    plain_problem,
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"id": st.one_of(text, st.integers(), st.none()), "question": json_values},
            optional={"answer": json_values},
        ),
    ),
    st.builds(json.dumps, json_values),
    st.sampled_from(['{"id": "s", "question": "a\\ud800"}', "", "   ", "[1", "\x00"]),
    text,
)


@FUZZ
@given(st.lists(lines, min_size=1, max_size=6), st.one_of(st.just(b""), st.binary(max_size=20)))
def test_any_dataset_loads_or_names_its_line(
    capsys: pytest.CaptureFixture[str], rows: list[str], tail: bytes
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "r.yaml"
        recipe.write_text(yaml.safe_dump(BASE))
        data = Path(folder) / "d.jsonl"
        encoded = "\n".join(rows).encode("utf-8", "surrogatepass") + b"\n" + tail
        data.write_bytes(encoded)
        argv = ["eval", str(recipe), "--dataset", str(data), "--quiet", "--limit", "3"]
        argv += ["--out", str(Path(folder) / "out")]
        _check_cli(argv, capsys)


plausible = st.builds(
    lambda content, extra: json.dumps(
        {"model": "sc", "messages": [{"role": "user", "content": content}], **extra}
    ).encode(),
    st.text(max_size=80),
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.integers(min_value=-2, max_value=10**6),
            "max_tokens": st.integers(min_value=-2, max_value=10**6),
            "temperature": st.floats(allow_nan=True, allow_infinity=True),
            "seed": st.integers(min_value=-(2**70), max_value=2**70),
        },
    ),
)
bodies = st.one_of(
    plausible,
    plausible,
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(
        lambda messages, extra: json.dumps({"model": "sc", "messages": messages, **extra}).encode(),
        json_values,
        st.dictionaries(
            st.sampled_from(["n", "max_tokens", "temperature", "stream", "seed", "branchwise"]),
            json_values,
            max_size=3,
        ),
    ),
    st.binary(max_size=200),
)


@settings(FUZZ, max_examples=40)
@given(
    st.lists(
        st.tuples(bodies, st.sampled_from(["application/json", "text/plain", ""])),
        min_size=1,
        max_size=10,
    )
)
def test_any_request_body_gets_a_documented_status(requests: list[tuple[bytes, str]]) -> None:
    async def go() -> None:
        async with served() as s:
            for body, kind in requests:
                headers = {"Content-Type": kind} if kind else {}
                path = "/v1/chat/completions"
                response = await s.client.post(path, content=body, headers=headers)
                assert response.status_code in STATUSES, (body[:80], response.text)
                event(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    error = response.json()["error"]
                    assert "\n" not in error["message"] and "Traceback" not in error["message"]
            assert JSON  # the helper module's headers stay importable

    with alarm():
        run(go)

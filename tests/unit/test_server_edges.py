"""The server's edges (issue 24): bodies that are too deep, not JSON, not text; requests from
a web page; a server without an API key listens on loopback only and says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from branchwise.orchestrator.cli import main
from branchwise.orchestrator.server.app import LOOPBACK_HOSTS, MAX_JSON_DEPTH, json_depth
from branchwise.orchestrator.server.main import bind, is_loopback
from tests.unit.test_server import JSON, chat, run, served

REPO = Path(__file__).resolve().parents[2]


def test_too_deep_unparsable_and_non_text_bodies_are_400s() -> None:
    async def go() -> None:
        async with served() as s:
            deep = b"[" * 100_000 + b"]" * 100_000
            just_past = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
            bodies = [
                deep,
                just_past,
                b'{"model": "sc", "messages": [{"role": "user", "content": "a\\ud800"}]}',
                b"\xff\xfe",
                b"",
            ]
            for body in bodies:
                response = await s.client.post("/v1/chat/completions", content=body, headers=JSON)
                assert response.status_code == 400, (body[:40], response.text)
                assert response.json()["error"]["code"] == "invalid_json"
            assert s.server.stats.started == 0
            ok = await s.client.post("/v1/chat/completions", json=chat())
            assert ok.status_code == 200

    run(go)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_body_that_is_not_application_json_is_a_415(content_type: str | None) -> None:
    async def go() -> None:
        async with served() as s:
            headers = {"Content-Type": content_type} if content_type else {}
            body = b'{"model": "sc", "messages": [{"role": "user", "content": "Add 2."}]}'
            response = await s.client.post("/v1/chat/completions", content=body, headers=headers)
            assert response.status_code == 415
            assert response.json()["error"]["code"] == "unsupported_media_type"
            assert s.server.stats.started == 0
            charset = {"Content-Type": "application/json; charset=utf-8"}
            response = await s.client.post("/v1/chat/completions", content=body, headers=charset)
            assert response.status_code == 200

    run(go)


def test_without_a_key_only_requests_addressed_to_loopback_are_answered() -> None:
    async def go() -> None:
        async with served(hosts=LOOPBACK_HOSTS) as s:
            for host in ("evil.example", "evil.example:8000", "192.168.1.4:8000"):
                response = await s.client.get("/v1/models", headers={"Host": host})
                assert response.status_code == 403, host
                assert response.json()["error"]["code"] == "host_not_allowed"
            for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"):
                response = await s.client.get("/v1/models", headers={"Host": host})
                assert response.status_code == 200, host

    run(go)


def test_json_depth_counts_without_recursion() -> None:
    assert json_depth({"a": [1, {"b": []}]}, 99) == 4
    assert json_depth(5, 99) == 0
    nested: list[object] = []
    for _ in range(50_000):
        nested = [nested]
    assert json_depth(nested, 10) == 10  # stops early, no RecursionError


def test_serve_without_a_key_refuses_other_addresses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "sc.yaml"
    recipe.write_text("engine: {kind: scripted}\nstrategy: {name: self_consistency}\n")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert main(["serve", str(recipe), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "listens on loopback only" in err


def test_serve_without_a_key_says_so_on_start(tmp_path: Path) -> None:
    recipe = tmp_path / "sc.yaml"
    recipe.write_text("engine: {kind: scripted}\nstrategy: {name: self_consistency}\n")
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "branchwise", "serve", str(recipe), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        rebound = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"Host": "attacker.example"}
        )
        assert rebound.status_code == 403
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "with no API key: loopback only" in err

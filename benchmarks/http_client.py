"""Client CPU per request of the OpenAI engine, httpx against aiohttp, by requests in flight.

A fake completions server runs in a child process (so its CPU is not counted) and answers
every ``/v1/completions`` after a fixed delay with a vLLM-shaped body. The engine sends
``--requests`` generation requests with 8, 32 and 128 in flight (``max_concurrency``), and
the benchmark reports this process's CPU seconds per request (``time.process_time``: all
client work, the engine's JSON and bookkeeping included) and the wall time.

    python benchmarks/http_client.py [--requests 3000] [--delay 0.02] [--in-flight 8,32,128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import table, write_json, write_section
from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from branchwise.orchestrator.help_format import HelpWithDefaults

CLIENTS = ("httpx", "aiohttp")
TOKENS = 32  # per completion
N = 4  # completions per request


def _answer() -> bytes:
    choice = {
        "text": "x" * TOKENS,
        "token_ids": list(range(100, 100 + TOKENS)),
        "finish_reason": "length",
        "stop_reason": None,
        "logprobs": None,
    }
    body = {
        "id": "cmpl-bench",
        "object": "text_completion",
        "model": "m",
        "choices": [{**choice, "index": i} for i in range(N)],
        "usage": {"prompt_tokens": 40, "completion_tokens": N * TOKENS, "total_tokens": 168},
    }
    return json.dumps(body).encode()


def serve(port: int, delay: float, ready: Any) -> None:
    """The fake server's process: answer after ``delay`` seconds, forever."""
    from aiohttp import web

    answer = _answer()

    async def completions(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(body=answer, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def measure(url: str, client: str, in_flight: int, requests: int) -> dict[str, float]:
    config = OpenAIEngineConfig(
        base_urls=[url], model="m", max_concurrency=in_flight, http_client=client
    )  # type: ignore[arg-type]
    prompt = tuple(range(1, 41))
    spec = SamplingSpec(max_tokens=TOKENS, seed=0)
    async with OpenAIEngine(config) as engine:
        warm = [GenerationRequest(f"w{i}", prompt, spec, n=N) for i in range(in_flight)]
        await asyncio.gather(*(engine.generate(r) for r in warm))  # open the connections
        batch = [GenerationRequest(f"r{i}", prompt, spec, n=N) for i in range(requests)]
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(engine.generate(r) for r in batch))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_ms_per_request": 1000 * cpu / requests,
        "wall_seconds": wall,
        "requests_per_second": requests / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--delay", type=float, default=0.02, help="server seconds per request")
    parser.add_argument("--in-flight", default="8,32,128")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    levels = [int(x) for x in args.in_flight.split(",")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, args.delay, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the fake server did not start")
        url = f"http://127.0.0.1:{port}"
        results: dict[str, dict[str, dict[str, float]]] = {c: {} for c in CLIENTS}
        for level in levels:
            for client in CLIENTS:
                results[client][str(level)] = asyncio.run(
                    measure(url, client, level, args.requests)
                )
    finally:
        server.terminate()
        server.join(10)
    rows = [
        [
            client,
            level,
            f"{results[client][str(level)]['cpu_ms_per_request']:.3f}",
            f"{results[client][str(level)]['requests_per_second']:.0f}",
        ]
        for level in levels
        for client in CLIENTS
    ]
    text = table(["client", "in flight", "client CPU ms / request", "requests/s"], rows)
    print(text)
    if args.no_write:
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cpus"
    write_json("http_client", {"results": results, "args": vars(args), "machine": machine})
    write_section(
        "http_client",
        "## HTTP client cost per request\n\n"
        f"The OpenAI engine against a fake completions server in another process ({machine}): "
        f"{args.requests} requests (n={N}, {TOKENS} tokens each) per row, the server answering "
        f"after {args.delay * 1000:.0f} ms; client CPU is this process's CPU time per request, "
        "the engine's JSON and bookkeeping included.\n"
        "Command: `python benchmarks/http_client.py`.\n\n"
        f"{text}\n",
    )


if __name__ == "__main__":
    main()

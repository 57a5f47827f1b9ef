"""Load on the strategy server: many chat requests, a fixed number in flight, official client.

Starts ``branchwise serve RECIPE`` on 127.0.0.1 in a subprocess (or uses ``--url``, a server
already running), waits until it answers ``/health``, then sends ``--requests`` chat
completions through ``openai.AsyncOpenAI`` with at most ``--concurrency`` in flight (no client
retries: a 429 or any error counts as a failure). Questions come from the recipe's dataset,
cycled; request ``i`` asks with ``seed=i``. Every response must carry an answer, usage and
the same trace id in header and body, each trace id once ("nothing lost"); the server's own
counters must agree.

Prints latency percentiles and throughput; writes ``benchmarks/results/server_load.json`` and
the ``server_load`` section of BENCHMARKS.md.

    python benchmarks/server_load.py [--recipe examples/recipes/demo.yaml] [--requests 200]
        [--concurrency 32] [--url http://127.0.0.1:8000 --model demo]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import table, write_json, write_section
from branchwise.orchestrator.engines.vllm_server import free_port, wait_healthy
from branchwise.orchestrator.help_format import HelpWithDefaults

ROOT = Path(__file__).resolve().parent.parent
TRACE_HEADER = "x-branchwise-trace-id"


@dataclass
class LoadReport:
    """What a load run saw, request by request and in all."""

    requests: int
    concurrency: int
    wall_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    answered: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "failed": len(self.failures),
            "distinct_trace_ids": len(set(self.trace_ids)),
            "answered": self.answered,
            "wall_seconds": round(self.wall_seconds, 3),
            "latency_p50": round(self.percentile(50), 3),
            "latency_p90": round(self.percentile(90), 3),
            "latency_p99": round(self.percentile(99), 3),
            "latency_mean": round(float(np.mean(self.latencies)), 3) if self.latencies else None,
            "requests_per_second": round(self.ok / self.wall_seconds, 3),
            "generated_tokens": self.generated_tokens,
            "generated_tokens_per_second": round(self.generated_tokens / self.wall_seconds, 1),
            "prompt_tokens": self.prompt_tokens,
            "cached_share": round(self.cached_tokens / max(self.prompt_tokens, 1), 4),
        }


async def run_load(
    base_url: str,
    model: str,
    questions: list[str],
    *,
    requests: int = 200,
    concurrency: int = 32,
    api_key: str | None = None,
    timeout: float = 600.0,
) -> LoadReport:
    """Send ``requests`` chat completions, ``concurrency`` at a time; never raises per request."""
    from openai import AsyncOpenAI

    report = LoadReport(requests, concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    client = AsyncOpenAI(
        base_url=base_url.rstrip("/") + "/v1",
        api_key=api_key or "none",
        max_retries=0,
        timeout=timeout,
        # openai 3.x types this as its httpx2 fork's client, which keeps httpx's API; an httpx
        # client works (tests/integration/test_server.py drives the load through this path)
        http_client=httpx.AsyncClient(  # type: ignore[arg-type]
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            timeout=timeout,
        ),
    )

    async def one(index: int) -> None:
        question = questions[index % len(questions)]
        start = time.perf_counter()
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": question}], seed=index
            )
            completion = raw.parse()
        except Exception as exc:
            report.failures.append(f"request {index}: {type(exc).__name__}: {exc}")
            return
        latency = time.perf_counter() - start
        facts = (completion.model_extra or {}).get("branchwise") or {}
        trace = raw.headers.get(TRACE_HEADER)
        problems = []
        if not trace or facts.get("trace_id") != trace:
            problems.append(f"trace id header {trace!r} != body {facts.get('trace_id')!r}")
        if completion.usage is None or completion.usage.completion_tokens <= 0:
            problems.append("no usage")
        if not completion.choices or not completion.choices[0].message.content:
            problems.append("no text")
        if problems:
            report.failures.append(f"request {index}: " + "; ".join(problems))
            return
        assert completion.usage is not None
        report.latencies.append(latency)
        report.trace_ids.append(str(trace))
        report.answered += facts.get("answer") is not None
        report.prompt_tokens += completion.usage.prompt_tokens
        details = completion.usage.prompt_tokens_details
        report.cached_tokens += (details.cached_tokens or 0) if details else 0
        report.generated_tokens += completion.usage.completion_tokens

    async def worker() -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await one(index)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    report.wall_seconds = time.perf_counter() - start
    return report


def describe(recipe_path: Path) -> str:
    """The recipe's search in a few words, e.g. ``self_consistency (n=16), max_tokens 96``."""
    from branchwise.orchestrator.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    fields = recipe.strategy.model_dump(exclude={"name"})
    knobs = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    return f"{recipe.strategy.name} ({knobs}), max_tokens {recipe.sampling.max_tokens}"


def dataset_questions(recipe_path: Path) -> list[str]:
    from branchwise.orchestrator.datasets import load_problems
    from branchwise.orchestrator.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    if recipe.dataset is None:
        raise SystemExit(f"{recipe_path}: the recipe has no dataset to take questions from")
    spec = recipe.dataset
    problems = load_problems(recipe.resolve(spec.path), format=spec.format, fields=spec.field_map())
    return [p.question for p in problems]


class ServerProcess:
    """``branchwise serve`` in a subprocess, stopped (SIGINT, then kill) on exit."""

    def __init__(self, recipe: Path, port: int, extra: list[str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.mkstemp(prefix="server_load_", suffix=".log")[1])
        command = [sys.executable, "-m", "branchwise", "serve", str(recipe)]
        command += ["--port", str(port), *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, seconds: float = 900.0) -> None:
        problem = wait_healthy(self.url, self.process, seconds)
        if problem is not None:
            raise SystemExit(f"server {problem}:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def report_table(summary: dict[str, Any]) -> str:
    row = [
        summary["requests"],
        summary["concurrency"],
        summary["ok"],
        summary["failed"],
        f"{summary['latency_p50']:.2f}",
        f"{summary['latency_p90']:.2f}",
        f"{summary['latency_p99']:.2f}",
        f"{summary['requests_per_second']:.2f}",
        f"{summary['generated_tokens_per_second']:.0f}",
        f"{100 * summary['cached_share']:.1f}%",
        f"{summary['wall_seconds']:.1f}",
    ]
    headers = [
        "requests", "in flight", "ok", "failed", "p50 s", "p90 s", "p99 s", "requests/s",
        "generated tokens/s", "prompt cached", "wall s",
    ]  # fmt: skip
    return table(headers, [row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--recipe", type=Path, default=ROOT / "examples/recipes/demo.yaml")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--url", help="a running server instead of starting one")
    parser.add_argument("--model", help="with --url: the model to ask (default: recipe stem)")
    parser.add_argument("--api-key-env", help="with --url: variable holding the API key")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    questions = dataset_questions(args.recipe)
    model = args.model or args.recipe.stem
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = None
    if args.url is None:
        limit = str(max(64, args.concurrency))
        server = ServerProcess(args.recipe, free_port(), ["--max-concurrency", limit])
        print(f"starting {server.url} (log {server.log}) ...", flush=True)
    try:
        if server is not None:
            started = time.monotonic()
            server.wait_ready()
            print(f"ready in {time.monotonic() - started:.0f} s", flush=True)
        url = args.url or (server.url if server else "")
        # one request first, so vLLM's first-batch costs are not in the numbers
        asyncio.run(run_load(url, model, questions, requests=1, concurrency=1, api_key=api_key))
        before = httpx.get(url + "/health", timeout=10).json()
        report = asyncio.run(
            run_load(
                url,
                model,
                questions,
                requests=args.requests,
                concurrency=args.concurrency,
                api_key=api_key,
            )
        )
        after = httpx.get(url + "/health", timeout=10).json()
    finally:
        if server is not None:
            server.stop()

    summary = report.summary()
    summary["load_average_1min"] = round(os.getloadavg()[0], 2)
    counted = {k: after[k] - before[k] for k in ("started", "completed", "failed", "cancelled")}
    summary["server"] = {
        **counted,
        "rejected_busy": after["rejected_busy"] - before["rejected_busy"],
    }
    summary["lost"] = args.requests - report.ok - len(report.failures)
    text = report_table(summary)
    print(text)
    for failure in report.failures[:10]:
        print("  " + failure)
    print(f"server counters: {summary['server']}; lost: {summary['lost']}")
    if args.no_write:
        return
    recipe_name = os.path.relpath(args.recipe.resolve(), ROOT)
    data = {
        **summary,
        "recipe": recipe_name,
        "search": describe(args.recipe),
        "questions": len(questions),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "latencies": [round(x, 4) for x in report.latencies],
        "failures": report.failures,
        "report": {k: v for k, v in asdict(report).items() if k not in ("latencies", "trace_ids")},
    }
    write_json("server_load", data)
    command = (
        f"python benchmarks/server_load.py --recipe {recipe_name} --requests {args.requests} "
        f"--concurrency {args.concurrency}"
    )
    write_section(
        "server_load",
        "## Strategy server under load\n\n"
        f"`branchwise serve {recipe_name}` on 127.0.0.1 (vLLM in process; {data['machine']}, "
        f"load average {summary['load_average_1min']} at the end: the machine is shared, so "
        f"latencies move with it); "
        f"{args.requests} chat completions through the official `openai` client, "
        f"{args.concurrency} in flight, no client retries; questions from the recipe's data set "
        f"(cycled), request i with seed i. Latency is per request, end to end, for a whole "
        f"search: {describe(args.recipe)}.\nCommand: `{command}`.\n\n{text}\n\n"
        f"Nothing lost: {summary['distinct_trace_ids']} distinct trace ids; server counters "
        f"{summary['server']}.\n",
    )


if __name__ == "__main__":
    main()

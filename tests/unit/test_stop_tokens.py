"""Stop tokens: the engine stops on tokens that hold a stop string, and no completion changes.

Checked on the testbed's byte-level BPE tokenizer (which merges ".\\n\\n" and "\\n\\n\\n" into
single tokens) against a brute-force reading of its vocabulary and of the testbed's solutions,
and through the OpenAI engine's request body and answer, with the server simulated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from branchwise.orchestrator.engines import stop_tokens
from branchwise.orchestrator.engines.config import OpenAIEngineConfig
from branchwise.orchestrator.engines.openai_engine import OpenAIEngine
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.engines.stop_tokens import (
    StopTokenCache,
    StopTokens,
    find_stop_tokens,
)
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from branchwise.orchestrator.generation import step_stop
from tests.conftest import make_problem
from tests.unit.sampling_support import run_strategy

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples/testbed/models/policy"
SOLUTIONS = REPO / "examples/testbed/data/eval.jsonl"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(POLICY), local_files_only=True)


def test_every_token_holding_the_delimiter_is_found_shortest_first(tokenizer: Any) -> None:
    found = find_stop_tokens(tokenizer, ("\n\n",))
    special = set(tokenizer.all_special_ids)
    expected = {
        i for i in range(len(tokenizer)) if i not in special and "\n\n" in tokenizer.decode([i])
    }
    assert set(found.ids) == expected and len(expected) > 5
    assert tokenizer.convert_tokens_to_ids("ĊĊ") == found.ids[0]  # "\n\n" itself, the shortest
    lengths = [len(tokenizer.decode([i])) for i in found.ids]
    assert lengths == sorted(lengths)
    assert all(held == "\n\n" for held in found.held.values())
    assert tokenizer.convert_tokens_to_ids("Ċ") not in found.ids  # "\n" alone holds no "\n\n"


def test_each_token_reads_as_the_first_stop_string_it_holds(tokenizer: Any) -> None:
    found = find_stop_tokens(tokenizer, (".\n", "\n"))
    dot_newline = tokenizer.convert_tokens_to_ids(".Ċ")
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    assert found.reason(dot_newline) == ".\n" and found.reason(newline) == "\n"
    assert found.reason(7) == 7  # a token that holds none (an EOS, say) is left as it was
    assert found.reason("\n") == "\n" and found.reason(None) is None


def test_at_most_the_cap_and_none_without_stop_strings(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stop_tokens, "MAX_STOP_TOKENS", 3)
    assert len(find_stop_tokens(tokenizer, ("\n",)).ids) == 3
    assert find_stop_tokens(tokenizer, ()) == StopTokens()


def test_a_stop_token_never_ends_a_step_before_the_stop_string_would(tokenizer: Any) -> None:
    """Every step of the testbed's solutions ends at the same token by string or by token."""
    stop = "\n\n"
    ids_holding = set(find_stop_tokens(tokenizer, (stop,)).ids)
    by_token = 0
    for line in SOLUTIONS.read_text().splitlines()[:40]:
        ids = tokenizer.encode(json.loads(line)["solution"], add_special_tokens=False)
        start = 0
        while start < len(ids):
            by_string = next(
                (
                    k
                    for k in range(start + 1, len(ids) + 1)
                    if stop in tokenizer.decode(ids[start:k], skip_special_tokens=True)
                ),
                None,
            )
            held = (k + 1 for k in range(start, len(ids)) if ids[k] in ids_holding)
            first_held = next(held, None)
            if first_held is not None:
                assert by_string is not None and first_held >= by_string
                by_token += first_held == by_string
            if by_string is None:
                break
            start = by_string
    assert by_token > 100  # the tokens end most steps themselves


def test_concurrent_asks_share_one_search() -> None:
    calls = []

    async def tokenizer() -> Any:
        calls.append(1)
        await asyncio.sleep(0.01)
        return None  # no tokenizer here: no stop tokens

    async def main() -> list[StopTokens]:
        cache = StopTokenCache()
        return list(await asyncio.gather(*(cache.get(("\n",), tokenizer) for _ in range(5))))

    assert asyncio.run(main()) == [StopTokens()] * 5
    assert calls == [1]


def _served(
    bodies: list[dict[str, Any]], stop_reason: object, token_ids: list[int]
) -> httpx.MockTransport:
    """A server answering one completion, ``token_ids``, ended by ``stop_reason``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v1/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "root": None}]})
        if request.url.path.endswith("/detokenize"):
            return httpx.Response(200, json={"prompt": "1+1=2\n\n"})
        body = json.loads(request.content)
        bodies.append(body)
        choice = {
            "index": 0,
            "text": "1+1=2\n\n",
            "token_ids": token_ids,
            "finish_reason": "stop",
            "stop_reason": stop_reason,
        }
        return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 3}})

    return httpx.MockTransport(handler)


def _generate(transport: httpx.MockTransport, **config: Any) -> Any:
    async def main() -> Any:
        engine_config = OpenAIEngineConfig(base_urls=["http://a"], model="m", **config)
        async with OpenAIEngine(engine_config, transport=transport) as engine:
            request = GenerationRequest("t", (1, 2, 3), SamplingSpec(stop=("\n\n",)), n=1)
            return (await engine.generate(request)).completions[0]

    return asyncio.run(main())


def test_the_openai_engine_sends_stop_tokens_and_reads_them_back(tokenizer: Any) -> None:
    bodies: list[dict[str, Any]] = []
    ids = tokenizer.encode("1+1=2\n\n", add_special_tokens=False)
    completion = _generate(_served(bodies, ids[-1], ids), tokenizer=str(POLICY))
    assert bodies[0]["stop_token_ids"] == find_stop_tokens(tokenizer, ("\n\n",)).ids
    assert bodies[0]["stop"] == ["\n\n"]  # the string still catches one split across tokens
    assert completion.stop_reason == "\n\n" and completion.ended_by_stop_string
    assert completion.text == "1+1=2\n\n"


def test_no_stop_tokens_when_turned_off_or_without_a_tokenizer() -> None:
    bodies: list[dict[str, Any]] = []
    _generate(_served(bodies, "\n\n", [1, 2]), tokenizer=str(POLICY), stop_tokens=False)
    _generate(_served(bodies, "\n\n", [1, 2]))  # the served folder is not on this machine
    assert [("stop_token_ids" in body) for body in bodies] == [False, False]


class _PreparingEngine(ScriptedEngine):
    """The scripted engine, recording which stop strings it was asked to prepare."""

    def __init__(self) -> None:
        super().__init__(error_rate=0.0)
        self.prepared: list[tuple[str, ...]] = []

    async def prepare_stop_tokens(self, stop: Sequence[str]) -> None:
        self.prepared.append(tuple(stop))


def test_the_orchestrator_has_the_engine_find_its_stop_tokens_at_start() -> None:
    engine = _PreparingEngine()
    strategy = {"name": "beam_search", "beam_width": 2, "expansions": 2, "scorer": "prm"}
    scorers = [{"kind": "reference_steps", "name": "prm"}]
    [result] = run_strategy(strategy, [make_problem(0)], engine, scorers=scorers)
    assert result.error is None
    one_step = step_stop("\n", ())
    assert one_step == ("\n",) and engine.prepared == [one_step]  # (the recipe adds none)
    assert all(r.sampling.stop == one_step for r in engine.requests)

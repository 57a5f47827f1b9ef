"""Stop tokens: the engine stops on tokens that hold a stop string, and no completion changes.

Checked on the testbed's byte-level BPE tokenizer (which merges ".\\n\\n" and "\\n\\n\\n" into
single tokens) against a brute-force reading of its vocabulary and of the testbed's solutions,
and through the OpenAI engine's request body and answer, with the server simulated.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from branchwise.core.errors import EngineError
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


def test_every_token_holding_the_delimiter_is_found_shortest_first(testbed_tokenizer: Any) -> None:
    tokenizer = testbed_tokenizer
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


def test_each_token_reads_as_the_first_stop_string_it_holds(testbed_tokenizer: Any) -> None:
    tokenizer = testbed_tokenizer
    found = find_stop_tokens(tokenizer, (".\n", "\n"))
    dot_newline = tokenizer.convert_tokens_to_ids(".Ċ")
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    assert found.reason(dot_newline, "1+1=2.\n") == ".\n"
    assert found.reason(newline, "1+1=2\n") == "\n"
    assert found.reason(7, "a\n") == 7  # a token that holds none (an EOS, say) stays as it was
    assert found.reason("\n", "a\n") == "\n" and found.reason(None, "a") is None


def test_at_most_the_cap_and_none_without_stop_strings(
    testbed_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = testbed_tokenizer
    monkeypatch.setattr(stop_tokens, "MAX_STOP_TOKENS", 3)
    assert len(find_stop_tokens(tokenizer, ("\n",)).ids) == 3
    assert find_stop_tokens(tokenizer, ()) == StopTokens()


def test_a_stop_token_never_ends_a_step_before_the_stop_string_would(
    testbed_tokenizer: Any,
) -> None:
    """Every step of the testbed's solutions ends at the same token by string or by token."""
    tokenizer = testbed_tokenizer
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


def test_the_openai_engine_sends_stop_tokens_and_reads_them_back(testbed_tokenizer: Any) -> None:
    tokenizer = testbed_tokenizer
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

    async def prepare_stop_tokens(self, stop: Sequence[str]) -> StopTokens:
        self.prepared.append(tuple(stop))
        return StopTokens()


def test_the_orchestrator_has_the_engine_find_its_stop_tokens_at_start() -> None:
    engine = _PreparingEngine()
    strategy = {"name": "beam_search", "beam_width": 2, "expansions": 2, "scorer": "prm"}
    scorers = [{"kind": "reference_steps", "name": "prm"}]
    [result] = run_strategy(strategy, [make_problem(0)], engine, scorers=scorers)
    assert result.error is None
    one_step = step_stop("\n", ())
    assert one_step == ("\n",) and engine.prepared == [one_step]  # (the recipe adds none)
    assert all(r.sampling.stop == one_step for r in engine.requests)


def test_tokens_the_tokenizer_marks_special_are_left_out(testbed_tokenizer: Any) -> None:
    """Special tokens beyond the named ones (added with special=True) read as nothing."""
    tokenizer = testbed_tokenizer
    from tokenizers import AddedToken

    special = copy.deepcopy(tokenizer)
    special.add_tokens([AddedToken("<|a\n\n|>", special=True)])
    added = special.convert_tokens_to_ids("<|a\n\n|>")
    assert added not in find_stop_tokens(special, ("\n\n",)).ids
    special.add_tokens([AddedToken("<b\n\n>", special=False)])
    assert special.convert_tokens_to_ids("<b\n\n>") in find_stop_tokens(special, ("\n\n",)).ids


def test_a_token_id_reads_as_its_string_only_where_the_text_holds_it() -> None:
    stops = StopTokens({7: "\n\n"})
    assert stops.reason(7, "1+1=2\n\n") == "\n\n"
    assert stops.reason(7, "1+1=2") == 7  # the server found no string there: left as it was


def test_a_tokenizer_that_cannot_be_searched_gives_no_stop_tokens_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unsearchable:
        def __len__(self) -> int:
            return 3

        def batch_decode(self, ids: Any) -> list[str]:  # no keyword arguments
            return ["a"] * len(ids)

    calls = []

    async def tokenizer() -> Any:
        calls.append(1)
        return Unsearchable()

    async def main() -> list[StopTokens]:
        cache = StopTokenCache()
        return [await cache.get(("\n",), tokenizer) for _ in range(3)]

    assert asyncio.run(main()) == [StopTokens()] * 3
    assert calls == [1]  # remembered: searched once, warned once
    assert sum("no stop tokens" in r.message for r in caplog.records) == 1


def test_no_tokenizer_yet_or_a_failed_ask_is_asked_again() -> None:
    answers: list[Any] = [EngineError("no server up"), None, None]

    async def tokenizer() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main() -> None:
        cache = StopTokenCache()
        with pytest.raises(EngineError):
            await cache.get(("\n",), tokenizer)
        assert await cache.get(("\n",), tokenizer) == StopTokens()  # none here yet
        assert await cache.get(("\n",), tokenizer) == StopTokens()

    asyncio.run(main())
    assert answers == []


def test_a_waiter_cancelled_leaves_the_shared_search_to_the_others() -> None:
    release = asyncio.Event()

    async def tokenizer() -> Any:
        await release.wait()
        return None

    async def main() -> StopTokens:
        cache = StopTokenCache()
        first = asyncio.ensure_future(cache.get(("\n",), tokenizer))
        second = asyncio.ensure_future(cache.get(("\n",), tokenizer))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        return await second

    assert asyncio.run(main()) == StopTokens()


class _NotReadyEngine(_PreparingEngine):
    async def prepare_stop_tokens(self, stop: Sequence[str]) -> StopTokens:
        raise EngineError("not started")


def test_an_engine_that_cannot_prepare_still_searches() -> None:
    strategy = {"name": "beam_search", "beam_width": 2, "expansions": 2, "scorer": "prm"}
    scorers = [{"kind": "reference_steps", "name": "prm"}]
    [result] = run_strategy(strategy, [make_problem(0)], _NotReadyEngine(), scorers=scorers)
    assert result.error is None and result.answer is not None

"""Loud failures: a search that returns without an answer says why, in the result, the API's
log and the server's response (never an empty 200 without a reason)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from branchwise.core.graph import Score
from branchwise.orchestrator.api import search_many, search_sync
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.server.app import TRACE_HEADER
from branchwise.rewards.intrinsic import MeanLogprob
from tests.conftest import make_problem, scripted_recipe, teach
from tests.unit.test_server import chat, recipe_data, run, served

PROBLEMS = [make_problem(i) for i in range(3)]
BEST_OF_N = {"name": "best_of_n", "n": 4, "scorer": "mean_logprob"}


@pytest.fixture
def broken_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: object, problem: object, candidates: list[object]) -> list[Score]:
        return [Score(value=None, error="the scorer's model is missing") for _ in candidates]

    monkeypatch.setattr(MeanLogprob, "score", broken)


def _best_of_n(**extra: Any) -> Any:
    return scripted_recipe(
        BEST_OF_N,
        scorers=[{"kind": "mean_logprob"}],
        sampling={"temperature": 1.0, "max_tokens": 64, "logprobs": 0},
        error_rate=0.0,
        **extra,
    )


@pytest.mark.usefixtures("broken_scorer")
def test_a_scorer_failing_everywhere_is_a_warning_on_the_result_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = ScriptedEngine()
    teach(engine, PROBLEMS)
    with caplog.at_level(logging.WARNING, logger="branchwise"):
        results = asyncio.run(search_many(PROBLEMS, _best_of_n(), engine=engine))
    for result in results:
        assert result.error is None and result.answer is None
        kinds = [w.kind for w in result.warnings]
        assert kinds == ["scorer_failed"], kinds
        assert result.warnings[0].subject == "mean_logprob"
        assert "the scorer's model is missing" in result.warnings[0].message
        assert result.to_record()["warnings"][0]["kind"] == "scorer_failed"
    said = [r.getMessage() for r in caplog.records if "failed on every node" in r.getMessage()]
    assert len(said) == 1 and "(in 3 problems)" in said[0]


def test_a_budget_that_ends_before_any_answer_is_a_warning_that_says_so() -> None:
    recipe = scripted_recipe(
        {"name": "self_consistency", "n": 4},
        budget={"max_generated_tokens": 8},
        error_rate=0.0,
    )
    (result,) = search_sync(PROBLEMS[0].question, recipe)
    assert result.answer is None and result.error is None
    assert [w.kind for w in result.warnings] == ["budget_ran_out"]
    assert "less than one completion" in result.warnings[0].message


def test_a_good_search_has_no_warnings() -> None:
    engine = ScriptedEngine()
    teach(engine, PROBLEMS)
    recipe = scripted_recipe({"name": "self_consistency", "n": 4}, error_rate=0.0)
    (result,) = asyncio.run(search_many(PROBLEMS[:1], recipe, engine=engine))
    assert result.answer is not None and result.warnings == []


@pytest.mark.usefixtures("broken_scorer")
def test_the_server_answers_a_search_whose_scorer_failed_everywhere_with_a_500() -> None:
    data = recipe_data(
        strategy=BEST_OF_N,
        scorers=[{"kind": "mean_logprob"}],
        sampling={"temperature": 1.0, "max_tokens": 64, "logprobs": 0},
    )

    async def go() -> None:
        async with served(data) as s:
            for stream in (False, True):
                response = await s.client.post("/v1/chat/completions", json=chat(stream=stream))
                if not stream:
                    assert response.status_code == 500
                    error = response.json()["error"]
                else:  # the stream has begun (200): it ends with an error event
                    assert '"search_failed"' in response.text and "[DONE]" not in response.text
                    error = {"code": "search_failed", "message": response.text}
                assert error["code"] == "search_failed"
                assert "scorer 'mean_logprob' failed on every node" in error["message"]
                assert response.headers[TRACE_HEADER] in error["message"]

    run(go)


def test_the_server_gives_an_answerless_200_a_reason_in_branchwise_warnings() -> None:
    async def go() -> None:
        async with served() as s:
            tight = await s.client.post(
                "/v1/chat/completions", json=chat(budget={"max_generated_tokens": 8})
            )
            assert tight.status_code == 200
            body = tight.json()
            assert body["choices"][0]["finish_reason"] == "length"
            assert body["branchwise"]["answer"] is None
            warnings = body["branchwise"]["warnings"]
            assert [w["kind"] for w in warnings] == ["budget_ran_out"]
            fine = (await s.client.post("/v1/chat/completions", json=chat())).json()
            assert fine["branchwise"]["answer"] is not None
            assert fine["branchwise"]["warnings"] == []

    run(go)


def test_recipe_data_is_the_servers_own() -> None:
    assert parse_recipe(recipe_data()).strategy.name == "self_consistency"

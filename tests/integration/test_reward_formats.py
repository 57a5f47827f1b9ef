"""Reward-model formats on vLLM: in process and over HTTP, against the model cards' readings.

Only formats vLLM can serve correctly are started here (``qwen_prm`` with STEP pooling by the
tag id looked up in the tokenizer, ``sequence_classify`` with ``classify`` pooling); each gets
one in-process engine and one server for the whole module. ``token_classify`` on vLLM and HTTP
is covered by test_scorers.py (its engines read the testbed PRM). The formats vLLM cannot
serve (shepherd, rlhflow, value_head) are refused at config time (unit tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.rewards.prm import OutcomeRewardModel, ProcessRewardModel, RewardModelConfig
from examples.lookalikes.build import build
from tests import reward_cards as cards
from tests.integration.conftest import EngineLoop, serve

pytestmark = pytest.mark.vllm

TOL = 1e-4
PROBLEM = Problem(id="t", question=cards.QUESTION)
ENGINE = {"max_model_len": 512, "gpu_memory_utilization": 0.1}
SERVER = [
    "--dtype", "float32", "--max-model-len", "512", "--gpu-memory-utilization", "0.1",
    "--enforce-eager", "--block-size", "32", "--runner", "pooling",
]  # fmt: skip


def candidates() -> list[Candidate]:
    return [
        Candidate(node_id=f"r.{i}", prompt="", steps=steps, answer=None, terminal=False)
        for i, steps in enumerate(cards.PATHS)
    ]


@pytest.fixture(scope="module")
def qwen_prm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("qwen_prm", tmp_path_factory.mktemp("rm") / "qwen_prm")


@pytest.fixture(scope="module")
def orm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("sequence_classify", tmp_path_factory.mktemp("rm") / "sequence_classify")


def tag_id(folder: Path) -> int:
    from transformers import AutoTokenizer

    (token,) = AutoTokenizer.from_pretrained(folder).encode("<extra_0>", add_special_tokens=False)
    return int(token)


@pytest.fixture(scope="module")
def qwen_server(qwen_prm: Path) -> Iterator[str]:
    pooler = json.dumps({"task": "token_classify", "step_tag_id": tag_id(qwen_prm)})
    yield from serve(qwen_prm, "qwen_prm", [*SERVER, "--pooler-config", pooler])


@pytest.fixture(scope="module")
def orm_server(orm: Path) -> Iterator[str]:
    yield from serve(orm, "orm", [*SERVER, "--pooler-config", '{"task": "classify"}'])


def scorer(folder: Path, kind: str = "prm", **values: Any) -> ProcessRewardModel:
    cls = OutcomeRewardModel if kind == "orm" else ProcessRewardModel
    config = RewardModelConfig(kind=kind, model=str(folder), **ENGINE, **values)
    return cls(config, ScorerResources())


def served(name: str, url: str, folder: Path, kind: str = "prm", **values: Any) -> Any:
    """A scorer on a server: ``model`` is the served name, the tokenizer is local."""
    cls = OutcomeRewardModel if kind == "orm" else ProcessRewardModel
    config = RewardModelConfig(
        kind=kind, model=name, backend="http", base_url=url, tokenizer=str(folder), **values
    )
    return cls(config, ScorerResources())


def step_values_of(prm: ProcessRewardModel, run: Any) -> list[tuple[float, ...]]:
    scores = run(prm.score(PROBLEM, candidates()))
    assert all(s.ok for s in scores), [s.error for s in scores]
    return [s.step_values for s in scores]


def test_qwen_prm_in_process_and_over_http_equal_the_card(
    qwen_prm: Path, qwen_server: str, engine_loop: EngineLoop
) -> None:
    expected = [cards.qwen_prm(qwen_prm, cards.QUESTION, p) for p in cards.PATHS]
    in_process = scorer(qwen_prm, format="qwen_prm", backend="vllm")
    by_vllm = step_values_of(in_process, engine_loop.run)
    assert in_process.backend.step_tag_id == tag_id(qwen_prm) != 151651  # type: ignore[attr-defined]
    engine_loop.run(in_process.aclose())
    http = served("qwen_prm", qwen_server, qwen_prm, format="qwen_prm")
    by_http = step_values_of(http, asyncio.run)
    for want, v, h in zip(expected, by_vllm, by_http, strict=True):
        assert v == pytest.approx(want, abs=TOL)
        assert h == pytest.approx(want, abs=TOL)
    print("qwen_prm max |diff| vllm", _diff(by_vllm, expected), "http", _diff(by_http, expected))


def test_sequence_classify_gives_the_raw_reward_in_process_and_over_http(
    orm: Path, orm_server: str, engine_loop: EngineLoop
) -> None:
    import math

    expected = [cards.sequence_classify(orm, cards.QUESTION, p) for p in cards.PATHS]
    raw = scorer(orm, "orm", format="sequence_classify", backend="vllm")
    sigmoid = scorer(orm, "orm", format="sequence_classify", backend="vllm", activation="sigmoid")
    sigmoid.backend = raw.backend  # one engine, two stated activations

    async def both() -> tuple[list[Any], list[Any]]:
        return await raw.score(PROBLEM, candidates()), await sigmoid.score(PROBLEM, candidates())

    by_vllm, squashed = engine_loop.run(both())
    engine_loop.run(raw.aclose())
    http = served("orm", orm_server, orm, kind="orm", format="sequence_classify")
    by_http = asyncio.run(http.score(PROBLEM, candidates()))
    assert [s.value for s in by_vllm] == pytest.approx(expected, abs=TOL)
    assert [s.value for s in by_http] == pytest.approx(expected, abs=TOL)
    assert [s.value for s in squashed] == pytest.approx(
        [1 / (1 + math.exp(-x)) for x in expected], abs=TOL
    )
    values = [[s.value] for s in by_vllm], [[s.value] for s in by_http]
    print("sequence_classify max |diff| vllm", _diff(values[0], [[e] for e in expected]),
          "http", _diff(values[1], [[e] for e in expected]))  # fmt: skip


def _diff(got: list[Any], want: list[Any]) -> float:
    return max(
        abs(a - b) for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True)
    )

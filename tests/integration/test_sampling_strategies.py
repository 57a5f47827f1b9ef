"""Sampling-level strategies on real vLLM: streaming, aborts and forks on real logprobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from branchwise.core.problem import Problem
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.integration.conftest import POLICY, TESTBED, EngineLoop

pytestmark = pytest.mark.vllm
EVAL = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "data" / "eval.jsonl"
MAX_TOKENS = 96


def _problems(count: int = 5) -> list[Problem]:
    return load_problems(EVAL, limit=count)


def _solve(
    loop: EngineLoop,
    engine: VLLMEngine,
    strategy: dict[str, Any],
    problems: list[Problem],
    *,
    seed: int = 11,
) -> list[ProblemResult]:
    recipe = parse_recipe(
        {
            **TESTBED,
            "engine": {"kind": "vllm", "model": str(POLICY)},
            "strategy": strategy,
            "sampling": {"temperature": 1.0, "max_tokens": MAX_TOKENS},
            "seed": seed,
        }
    )

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    results = loop.run(go())
    for result in results:
        assert result.error is None, result.error
        assert result.graph is not None
        in_graph = sum(n.generated_tokens for n in result.graph.nodes() if n.parent_id)
        assert in_graph == result.usage["generated_tokens"]
    assert engine.running_requests() == 0  # vLLM's own count: nothing left running
    return results


def test_adaptive_self_consistency_stops_by_its_rule(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    strategy = {"name": "adaptive_self_consistency", "max_samples": 16, "confidence": 0.9}
    results = _solve(engine_loop, vllm_engine, strategy, _problems())
    for result in results:
        detail = result.detail
        assert detail["samples"] + detail["saved_samples"] == 16
        assert 2 <= detail["samples"] <= 16  # the rule is checked after every sample
        assert result.graph is not None and len(result.graph.children("r")) == detail["samples"]
        # it stops early exactly when the Beta test is met (no budget here to stop it)
        assert detail["stop_reason"] in ("beta", "max_samples")
        assert (detail["stop_reason"] == "beta") == (detail["statistic"] >= 0.9)
        assert (detail["stop_reason"] == "beta") or detail["samples"] == 16


def test_deepconf_online_stops_traces_early_on_real_logprobs(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    strategy = {
        "name": "deepconf",
        "mode": "online",
        "n": 10,
        "warmup": 4,
        "window": 8,
        "keep_percent": 10,  # DeepConf-low: aggressive threshold
    }
    results = _solve(engine_loop, vllm_engine, strategy, _problems())
    stopped = 0
    for result in results:
        graph = result.graph
        assert graph is not None
        aborted = [n for n in graph.nodes() if n.finish_reason == "abort"]
        assert len(aborted) == result.detail["stopped_early"]
        for node in aborted:
            assert graph.state(node.id).status == "aborted"
            assert 8 <= len(node.token_ids) < MAX_TOKENS
        stopped += len(aborted)
        assert result.usage["aborted_requests"] == len(aborted)
    assert stopped > 0


def test_mbr_answer_equality_matches_the_vote_and_chrf_asks_each_pair_once(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    problems = _problems()
    mbr = _solve(
        engine_loop, vllm_engine, {"name": "mbr", "n": 8, "utility": "answer_equality"}, problems
    )
    vote = _solve(engine_loop, vllm_engine, {"name": "self_consistency", "n": 8}, problems)
    assert [r.answer for r in mbr] == [r.answer for r in vote]
    chrf = _solve(engine_loop, vllm_engine, {"name": "mbr", "n": 8, "utility": "chrf"}, problems)
    for result in chrf:
        pool = result.detail["pool"]
        assert result.detail["pairs"] == pool * (pool - 1) // 2


def test_first_finish_aborts_the_others_in_vllm(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    strategy = {"name": "first_finish", "n": 6, "require_answer": False}
    results = _solve(engine_loop, vllm_engine, strategy, _problems())
    aborted_total = 0
    for result in results:
        graph = result.graph
        assert graph is not None
        winner = graph.node(result.detail["winner"])
        samples = graph.children("r")
        aborted = [n for n in samples if n.finish_reason == "abort"]
        for node in aborted:
            assert graph.state(node.id).status == "aborted"
            assert node.answer is None and not node.terminal
        for node in samples:
            # Decoding runs in lockstep (requests start a step or two apart), so nobody else
            # had finished a clearly shorter trace, and the aborted ones had come as far.
            assert len(node.token_ids) >= len(winner.token_ids) - 3
        aborted_total += len(aborted)
    assert aborted_total > 0


def test_entropy_branching_forks_on_real_logprobs_from_exact_prefixes(
    engine_loop: EngineLoop, vllm_engine: VLLMEngine
) -> None:
    strategy = {
        "name": "entropy_branching",
        "entropy_threshold": 0.6,
        "branch_factor": 2,
        "max_paths": 4,
        "min_gap": 4,
    }
    results = _solve(engine_loop, vllm_engine, strategy, _problems())
    assert sum(r.detail["forks"] for r in results) > 0
    # Lending moves paths between problems but never makes new ones.
    assert sum(r.detail["paths"] for r in results) <= 4 * len(results)
    for result in results:
        graph = result.graph
        assert graph is not None
        assert result.detail["paths"] <= 4 + result.detail["borrowed_paths"]
        prompt_len = len(graph.root.token_ids)
        for trunk_id in result.detail["fork_nodes"]:
            trunk = graph.node(trunk_id)
            # The sample it forks from: cut at the fork, or (a late fork on a borrowed or
            # spare path) finished, having gone on past the uncertain token.
            sampled = [
                n
                for n in graph.children(trunk.parent_id or "r")
                if not n.forced and n.token_ids[: len(trunk.token_ids)] == trunk.token_ids
            ]
            assert sampled
            assert 1 <= len(graph.children(trunk_id)) <= 2
        for leaf in graph.terminals():
            # Forced text decoded by vLLM joins up with sampled text exactly.
            tokens = graph.full_token_ids(leaf.id)[prompt_len:]
            text = engine_loop.run(vllm_engine.decode(tokens))
            assert text == graph.solution_text(leaf.id)

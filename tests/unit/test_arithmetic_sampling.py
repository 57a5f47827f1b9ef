"""Arithmetic sampling: code points, the scripted code book, recipes and the claim's mechanism."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from typing import Any

import pytest

from branchwise.core.errors import RecipeError
from branchwise.core.problem import Problem
from branchwise.orchestrator.engines.code_book import (
    CodeDraws,
    code_points,
    decode_choice,
    radical_inverse,
)
from branchwise.orchestrator.engines.scripted import EOS, Continuation, ScriptedEngine
from branchwise.orchestrator.engines.types import GenerationRequest, SamplingSpec
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, teach

ERROR_RATE = 0.3
PROBLEMS = [make_problem(i, steps=3) for i in range(40)]


def _recipe(method: str, n: int = 8, seed: int = 0, **engine: Any) -> Any:
    return parse_recipe(
        {
            "engine": {"kind": "scripted", "error_rate": ERROR_RATE, **engine},
            "strategy": {"name": "self_consistency", "n": n},
            "sampling": {"temperature": 1.0, "max_tokens": 96, "method": method},
            "seed": seed,
        }
    )


def _run(recipe: Any, problems: list[Problem], engine: ScriptedEngine) -> list[ProblemResult]:
    teach(engine, problems)

    async def go() -> list[ProblemResult]:
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    return asyncio.run(go())


def _samples(result: ProblemResult) -> list[tuple[int, ...]]:
    assert result.graph is not None and result.error is None
    return [n.token_ids for n in result.graph.nodes() if n.parent_id is not None]


# -- the lattice ---------------------------------------------------------------------------


def test_power_of_two_prefixes_are_shifted_even_lattices() -> None:
    offset = 0.3141
    points = code_points(offset, range(8))
    for size in (1, 2, 4, 8):
        gaps = sorted((p - offset) % 1.0 for p in points[:size])
        assert gaps == pytest.approx([i / size for i in range(size)])
    assert [radical_inverse(i) for i in range(4)] == [0.0, 0.5, 0.25, 0.75]
    assert all(0.0 <= p < 1.0 for p in code_points(0.999999, range(64)))


def test_same_seed_same_code_points_and_children_share_their_nodes_lattice() -> None:
    def codes(seed: int, batch: int | None) -> list[tuple[float, ...]]:
        engine = ScriptedEngine()
        strategy = {"name": "self_consistency", "n": 8, "batch": batch}
        recipe = _recipe("arithmetic", seed=seed).model_copy(
            update={"strategy": _recipe("arithmetic").strategy.model_validate(strategy)}
        )
        _run(recipe, PROBLEMS[:1], engine)
        return [r.codes for r in engine.requests]

    whole = codes(0, None)
    assert whole == codes(0, None)  # same seed, same code points
    assert whole != codes(1, None)
    # two requests of 4 children of the root take the same 8 points as one request of 8
    halves = codes(0, 4)
    assert len(halves) == 2 and halves[0] + halves[1] == whole[0]


# -- the code book ------------------------------------------------------------------------


def test_decode_choice_picks_the_interval_and_rescales() -> None:
    assert decode_choice((0.2, 0.0, 0.8), 0.1) == (0, pytest.approx(0.5))
    assert decode_choice((0.2, 0.0, 0.8), 0.6) == (2, pytest.approx(0.5))
    assert decode_choice((2.0, 2.0), 0.75) == (1, pytest.approx(0.5))  # unnormalised
    index, rest = decode_choice((0.5, 0.5), math.nextafter(1.0, 0.0))
    assert index == 1 and 0.0 <= rest < 1.0
    draws = CodeDraws(0.05)  # [0, 0.3) errs; then 1-9 uniform: 0.05 / 0.3 = 0.1667 -> 2
    assert draws.chance(0.3) and draws.integer(1, 9) == 2
    with pytest.raises(ValueError, match="not in"):
        CodeDraws(1.0)


def _outcome(text: str, reference: list[str]) -> tuple[int, int] | None:
    """(first wrong line, its offset) of a scripted sample; None when all lines are right."""
    for index, (line, ref) in enumerate(zip(text.split("\n"), reference, strict=False)):
        if line != ref:
            return index, _last_number(line) - _last_number(ref)
    return None


def _last_number(line: str) -> int:
    return int(line.replace(":", "=").rsplit("=", 1)[1])


def test_each_samples_marginal_is_the_models_distribution() -> None:
    """Chi-square goodness of fit of arithmetic samples (first and last of a lattice of 4,
    over random offsets) to the scripted model's exact distribution over whole samples."""
    problem = make_problem(0, steps=3)
    assert problem.solution is not None
    reference = problem.solution.split("\n")
    engine = ScriptedEngine(error_rate=ERROR_RATE)
    teach(engine, [problem])
    prompt = asyncio.run(engine.tokenize(problem.question + "\n"))
    # exact: each of the 4 lines (3 steps, the answer) may go wrong; line k is the first
    # wrong one w.p. 0.7^k * 0.3, by an offset uniform in 1-9
    expected: dict[tuple[int, int] | None, float] = {None: (1 - ERROR_RATE) ** 4}
    for line in range(4):
        for offset in range(1, 10):
            expected[(line, offset)] = (1 - ERROR_RATE) ** line * ERROR_RATE / 9
    trials, rng = 3000, random.Random(7)
    counts: list[Counter[tuple[int, int] | None]] = [Counter(), Counter()]

    async def sample_all() -> None:
        for trial in range(trials):
            request = GenerationRequest(
                f"t{trial}", prompt, SamplingSpec(max_tokens=200), n=4,
                codes=code_points(rng.random(), range(4)),
            )  # fmt: skip
            completions = (await engine.generate(request)).completions
            for slot, completion in zip(counts, (completions[0], completions[3]), strict=True):
                slot[_outcome(completion.text, reference)] += 1

    asyncio.run(sample_all())
    critical = 67.98  # chi-square, 36 degrees of freedom, p = 0.001
    for slot in counts:
        assert set(slot) <= set(expected)
        statistic = sum((slot[k] - trials * p) ** 2 / (trials * p) for k, p in expected.items())
        assert statistic < critical, statistic


# -- the claim's mechanism on the scripted engine --------------------------------------------


def test_samples_are_stratified_so_duplicates_fall() -> None:
    """All-right samples own one interval of the code book, of length p = 0.7^4: a lattice
    of N points puts floor(Np) or ceil(Np) samples in it, never the binomial spread of
    ancestral sampling; so arithmetic sampling repeats the likeliest sample less often."""
    n, p = 8, (1 - ERROR_RATE) ** 4  # 3 steps and the answer line may each go wrong
    rates = {}
    for method in ("ancestral", "arithmetic"):
        results = _run(_recipe(method, n=n), PROBLEMS, ScriptedEngine())
        right = [sum(1 for s in _samples(r) if _right(r, s)) for r in results]
        if method == "arithmetic":
            assert set(right) <= {math.floor(n * p), math.ceil(n * p)}, right
        else:
            assert len(set(right)) > 3  # binomial: many counts
        rates[method] = sum(1 - len(set(_samples(r))) / n for r in results) / len(results)
    assert rates["arithmetic"] < rates["ancestral"] - 0.05, rates  # measured 0.125 vs 0.209


def _right(result: ProblemResult, sample: tuple[int, ...]) -> bool:
    problem = next(p for p in PROBLEMS if p.id == result.problem_id)
    text = "".join(chr(t - 3) for t in sample)
    return text.rstrip(EOS) == problem.solution


def test_thinking_and_step_level_expansions_decode_from_codes() -> None:
    thinker = ScriptedEngine()
    thinker.think(lines=(1, 4))
    thinking = _run(
        _recipe("arithmetic", n=4, thinking={"lines": [1, 4]}).model_copy(
            update={"reasoning": parse_recipe(_reasoning()).reasoning}
        ),
        PROBLEMS[:3],
        thinker,
    )
    assert all(r.error is None and r.answer is not None for r in thinking)
    assert all("</think>" in thinker.detokenize(_samples(r)[0]) for r in thinking)
    engine = ScriptedEngine()
    steps = parse_recipe(
        {
            "engine": {"kind": "scripted"},
            "strategy": {"name": "beam_search", "beam_width": 2, "expansions": 4,
                         "scorer": "steps", "max_depth": 6},
            "scorers": [{"kind": "reference_steps", "name": "steps"}],
            "sampling": {"temperature": 1.0, "max_tokens": 64, "method": "arithmetic"},
        }
    )  # fmt: skip
    results = _run(steps, PROBLEMS[:3], engine)
    assert all(r.error is None for r in results)
    assert all(len(r.codes) == r.n for r in engine.requests)


def _reasoning() -> dict[str, Any]:
    return {
        "engine": {"kind": "scripted", "thinking": {}},
        "strategy": {"name": "self_consistency", "n": 2},
        "reasoning": {"start": "<think>", "end": "</think>"},
    }


# -- recipes and engines ------------------------------------------------------------------


def test_an_engine_that_cannot_is_refused_in_one_line_naming_those_that_can() -> None:
    with pytest.raises(RecipeError) as refused:
        parse_recipe(
            {
                "engine": {"kind": "openai", "base_urls": ["http://h:8000"], "model": "m"},
                "strategy": {"name": "self_consistency", "n": 4},
                "sampling": {"method": "arithmetic"},
            }
        )
    message = str(refused.value)
    assert "sampling.method" in message and "'openai'" in message
    assert "vllm" in message and "scripted" in message
    with pytest.raises(RecipeError, match="temperature is 0"):
        parse_recipe(
            {
                "engine": {"kind": "scripted"},
                "strategy": {"name": "self_consistency", "n": 4},
                "sampling": {"method": "arithmetic", "temperature": 0.0},
            }
        )

    class Plain:  # an engine passed in that does not declare the capability
        name = "plain"

    with pytest.raises(RecipeError, match="engines that can: scripted, vllm"):
        Orchestrator(_recipe("arithmetic"), engine=Plain())  # type: ignore[arg-type]


def test_fingerprint_of_ancestral_recipes_is_unchanged_and_arithmetic_differs() -> None:
    plain = parse_recipe({"engine": {"kind": "scripted"}, "strategy": {"name": "self_consistency"}})
    explicit = _recipe("ancestral", n=16).model_copy(update={"sampling": plain.sampling})
    assert plain.fingerprint() == explicit.fingerprint()
    arithmetic = plain.model_copy(
        update={"sampling": plain.sampling.model_copy(update={"method": "arithmetic"})}
    )
    assert arithmetic.fingerprint() != plain.fingerprint()


def test_a_policy_without_draws_fails_with_an_engine_error() -> None:
    class Fixed:
        def continue_text(self, prompt: str, rng: random.Random) -> Continuation:
            return Continuation("Answer: 1" + EOS, (-0.1,) * 10)

    results = _run(_recipe("arithmetic", n=2), PROBLEMS[:1], ScriptedEngine(Fixed()))
    assert results[0].error is not None and "code points" in results[0].error


def test_the_server_serves_a_recipe_that_samples_arithmetically() -> None:
    from tests.unit.test_server import chat, recipe_data, run, served

    data = recipe_data(sampling={"temperature": 1.0, "max_tokens": 64, "method": "arithmetic"})

    async def go() -> None:
        async with served(data) as s:
            response = await s.client.post("/v1/chat/completions", json=chat(temperature=0.8))
            assert response.status_code == 200, response.text
            assert response.json()["branchwise"]["answer"] is not None
            (request,) = s.engine.requests
            assert request.n == 8 and len(set(request.codes)) == 8
            assert request.sampling.temperature == 0.8  # the client's override kept the method

    run(go)

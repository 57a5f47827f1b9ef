"""The step-level beam-search variants: best-first, diverse (groups), conditional Poisson."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from typing import Any

import pytest

from branchwise.core.graph import Node, path_key
from branchwise.strategies.conditional_poisson import (
    conditional_poisson_sample,
    inclusion_probabilities,
)
from branchwise.strategies.diverse_beam import choose_group_beams, step_similarity
from tests.conftest import make_problem
from tests.unit.step_helpers import run_strategy

NOISY = [{"kind": "noisy_prm", "name": "prm", "noise": 0.3}]
PROBLEMS = [make_problem(i, steps=4) for i in range(10)]


def _config(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "expansions": 3, "scorer": "prm", "aggregation": "min", **extra}


# --- best-first beam search ---------------------------------------------------------------


def test_best_first_finds_beam_search_answer_with_fewer_expansions() -> None:
    beam, beam_engine = run_strategy(
        _config("beam_search", beam_width=3), PROBLEMS, scorers=NOISY, error_rate=0.4
    )
    first, first_engine = run_strategy(
        _config("best_first_beam_search", beam_width=3), PROBLEMS, scorers=NOISY, error_rate=0.4
    )
    for b, f in zip(beam, first, strict=True):
        assert f.error is None and f.node_id == b.node_id and f.answer == b.answer
    # the early stop is what saves: without it every beam of every depth is expanded
    assert len(first_engine.requests) < len(beam_engine.requests)
    assert sum(r.detail["expansions"] for r in first) == len(first_engine.requests)
    assert any(r.detail["stopped_early"] for r in first)
    assert sum(float(r.usage["generated_tokens"]) for r in first) < sum(
        float(r.usage["generated_tokens"]) for r in beam
    )


def test_best_first_expands_at_most_b_paths_per_depth() -> None:
    results, _ = run_strategy(
        _config("best_first_beam_search", beam_width=2), PROBLEMS[:4], scorers=NOISY
    )
    for result in results:
        graph = result.graph
        assert graph is not None
        parents = Counter(n.depth for n in graph.nodes() if graph.children(n.id))
        assert max(parents.values()) <= 2


# --- diverse beam search ------------------------------------------------------------------


def _step(node_id: str, text: str) -> Node:
    return Node(id=node_id, parent_id="r", depth=1, token_ids=tuple(map(ord, text)), text=text)


def test_later_groups_are_pushed_off_the_steps_earlier_groups_kept() -> None:
    a, b, c = _step("r.0", "x=1"), _step("r.1", "x=2"), _step("r.2", "y=7")
    a2, b2 = _step("r.3", "x=1"), _step("r.4", "x=2")
    values = {"r.0": 0.9, "r.1": 0.5, "r.2": 0.1, "r.3": 0.9, "r.4": 0.8}

    def penalty(node: Node, earlier: Any, strength: float = 1.0) -> float:
        return strength * sum(step_similarity(node, e, "exact") for e in earlier)

    beams = choose_group_beams([[a, b, c], [a2, b2]], lambda n: values[n.id], 1, penalty)
    assert [[n.id for n in beam] for beam in beams] == [["r.0"], ["r.4"]]
    plain = choose_group_beams([[a, b, c], [a2, b2]], lambda n: values[n.id], 1, lambda *_: 0.0)
    assert [[n.id for n in beam] for beam in plain] == [["r.0"], ["r.3"]]


def test_ngram_similarity_is_jaccard_of_token_ngrams() -> None:
    assert step_similarity(_step("r.0", "abcd"), _step("r.1", "abcd"), "ngram") == 1.0
    assert step_similarity(_step("r.0", "abcd"), _step("r.1", "abxy"), "ngram") == pytest.approx(
        1 / 5
    )
    assert step_similarity(_step("r.0", "ab"), _step("r.1", "cd"), "ngram") == 0.0


def _avoidable_copies(results: list[Any], groups: int, expansions: int) -> tuple[int, int]:
    """Kept steps that copy a step an earlier group kept at the same depth although the group
    had a candidate that copied none; and all kept steps."""
    avoidable = total = 0
    for result in results:
        graph = result.graph
        previous: list[list[str]] = []
        for depth, kept_groups in enumerate(result.detail["group_beams"]):
            seen: set[str] = set()
            for g, beam in enumerate(kept_groups):
                if depth == 0:
                    first = graph.children(graph.root.id)[g * expansions : (g + 1) * expansions]
                    pool = [n for n in first]
                else:
                    pool = [c for i in previous[g] for c in graph.children(graph.node(i).id)]
                pool = [n for n in pool if not n.terminal and graph.state(n.id).status != "failed"]
                fresh = [n for n in pool if n.text not in seen]
                texts = [graph.node(i).text for i in beam]
                if fresh:
                    avoidable += sum(t in seen for t in texts)
                total += len(texts)
                seen.update(texts)
            previous = kept_groups
    return avoidable, total


def _distinct_kept_paths(results: list[Any]) -> int:
    """Distinct partial solutions the groups hold together, summed over depths and problems."""
    count = 0
    for result in results:
        graph = result.graph
        for groups in result.detail["group_beams"]:
            ids = [i for beam in groups for i in beam]
            count += len({"".join(n.text for n in graph.path(i)) for i in ids})
    return count


def test_diversity_penalty_spreads_groups_over_different_steps_and_answers() -> None:
    common = {"groups": 3, "group_width": 1, "similarity": "exact"}
    plain, _ = run_strategy(
        _config("diverse_beam_search", diversity_strength=0.0, **common),
        PROBLEMS,
        scorers=NOISY,
        error_rate=0.3,
    )
    diverse, _ = run_strategy(
        _config("diverse_beam_search", diversity_strength=2.0, **common),
        PROBLEMS,
        scorers=NOISY,
        error_rate=0.3,
    )
    plain_avoidable, _ = _avoidable_copies(plain, 3, 3)
    diverse_avoidable, total = _avoidable_copies(diverse, 3, 3)
    assert total > 0 and diverse_avoidable == 0 and plain_avoidable > 0
    assert _distinct_kept_paths(diverse) > _distinct_kept_paths(plain)
    # the answer is still chosen by unpenalised value among every finished path
    for result in diverse:
        assert result.graph is not None and result.node_id is not None
        assert result.node_id == _best_finished(result.graph)


def _best_finished(graph: Any) -> str:
    """The finished node with the highest min step value (ties: the earliest id)."""
    valued = []
    for node in graph.terminals():
        score = graph.score(node.id, "prm")
        if node.answer is not None and score is not None and score.ok:
            valued.append((-min(score.step_values), path_key(node.id), node.id))
    return str(min(valued)[2])


# --- conditional Poisson ------------------------------------------------------------------


def test_conditional_poisson_sample_follows_the_design() -> None:
    weights = [3.0, 1.0, 0.5, 2.0, 0.25]
    log_w = [math.log(w) for w in weights]
    k, draws = 2, 40_000
    rng = random.Random(7)
    counts = Counter(tuple(conditional_poisson_sample(log_w, k, rng)) for _ in range(draws))
    subsets = list(itertools.combinations(range(len(weights)), k))
    total = sum(math.prod(weights[i] for i in s) for s in subsets)
    for subset in subsets:
        expected = math.prod(weights[i] for i in subset) / total
        assert counts[subset] / draws == pytest.approx(expected, abs=0.01)
    pi = inclusion_probabilities(log_w, k)
    assert sum(pi) == pytest.approx(k)
    for i, p in enumerate(pi):
        seen = sum(c for s, c in counts.items() if i in s) / draws
        assert seen == pytest.approx(p, abs=0.01)


def test_conditional_poisson_sample_edges() -> None:
    rng = random.Random(0)
    assert conditional_poisson_sample([0.0, 0.0], 3, rng) == [0, 1]
    ninf = float("-inf")
    assert conditional_poisson_sample([ninf, 0.0, ninf, ninf], 2, rng) == [0, 1]
    assert conditional_poisson_sample([ninf, -1.0, -2.0, ninf], 2, rng) == [1, 2]


def _kept_below_pruned(results: list[Any]) -> int:
    """Depths where a kept open candidate has a lower value than a pruned sibling candidate."""
    count = 0
    for result in results:
        graph = result.graph
        for depth in range(1, 8):
            cands = [n for n in graph.nodes() if n.depth == depth and not n.terminal]
            scored = [(n, graph.score(n.id, "prm")) for n in cands]
            vals = {n.id: min(s.step_values) for n, s in scored if s is not None and s.ok}
            kept = [v for i, v in vals.items() if graph.state(i).status != "pruned"]
            pruned = [v for i, v in vals.items() if graph.state(i).status == "pruned"]
            if kept and pruned and min(kept) < max(pruned):
                count += 1
    return count


def test_cp_beam_samples_the_beam_and_is_beam_search_when_cold() -> None:
    sampled, _ = run_strategy(
        _config("cp_beam_search", beam_width=2, temperature=1.0), PROBLEMS, scorers=NOISY
    )
    assert _kept_below_pruned(sampled) > 0  # not the top K: sampled in proportion to weight
    cold, _ = run_strategy(
        _config("cp_beam_search", beam_width=2, temperature=1e-4), PROBLEMS, scorers=NOISY
    )
    beam, _ = run_strategy(_config("beam_search", beam_width=2), PROBLEMS, scorers=NOISY)
    # cold, it keeps the top K as beam search does (tied values may go either way)
    assert _kept_below_pruned(cold) == 0 == _kept_below_pruned(beam)

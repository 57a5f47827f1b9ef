"""Recipes validate at the edge and name the file, key path, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.recipe import load_recipe, parse_recipe
from branchwise.strategies.self_consistency import SelfConsistencyConfig

BASE = {"engine": {"kind": "scripted"}, "strategy": {"name": "self_consistency", "n": 4}}


def test_yaml_maps_onto_the_registered_config(tmp_path: Path) -> None:
    file = tmp_path / "r.yaml"
    file.write_text(
        "engine: {kind: scripted, error_rate: 0.1}\n"
        "strategy: {name: self_consistency, n: 5, weighting: path_probability}\n"
        "sampling: {temperature: 0.7, max_tokens: 32}\n"
        "budget: {max_generated_tokens: 1000}\n"
        "seed: 3\n"
    )
    recipe = load_recipe(file)
    assert isinstance(recipe.strategy, SelfConsistencyConfig)
    assert recipe.strategy.n == 5 and recipe.strategy.weighting == "path_probability"
    assert recipe.sampling.temperature == 0.7
    assert recipe.budget.max_generated_tokens == 1000
    assert recipe.base_dir == tmp_path


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"strategy": {"name": "self_consistency", "n": 0}}, "strategy.n"),
        ({"strategy": {"name": "self_consistncy"}}, "did you mean 'self_consistency'"),
        ({"strategy": {"name": "self_consistency", "bogus": 1}}, "strategy.bogus: unknown key"),
        ({"engine": {"kind": "nope"}}, "engine.kind"),
        ({"sampling": {"temperature": -1}}, "sampling.temperature"),
        ({"strategy": {"name": "best_of_n", "scorer": "prm"}}, "'prm' is not a scorer"),
        ({"scorers": [{"kind": "reference_answer", "bad": 1}]}, "scorers.0.bad"),
        ({"prompt": {"template": "no placeholder"}}, "{question}"),
        ({"prompt_template": "{question}"}, "replaced by the `prompt` section"),
        ({"prompt": {"system": "be brief"}}, "need style: chat"),
    ],
)
def test_errors_name_the_key_path(patch: dict[str, object], expected: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe({**BASE, **patch}, source="my.yaml")
    assert expected in str(info.value)
    assert "my.yaml" in str(info.value)


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("strategy: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken\.yaml: not valid YAML"):
        load_recipe(file)


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "absent.yaml")


def test_shipped_recipes_validate() -> None:
    recipes = sorted(Path(__file__).resolve().parents[2].glob("examples/recipes/*.yaml"))
    assert recipes, "examples/recipes should ship recipes"
    for file in recipes:
        load_recipe(file)


@pytest.mark.parametrize("strategy", ["beam_search", "particle_filter", "mcts", "a_star"])
def test_step_searches_refuse_an_answer_checker_as_their_path_scorer(strategy: str) -> None:
    recipe = {
        "engine": {"kind": "scripted"},
        "strategy": {"name": strategy, "scorer": "check"},
        "scorers": [{"kind": "reference_answer", "name": "check"}],
    }
    with pytest.raises(RecipeError, match=r"strategy.scorer: 'check' \(reference_answer\) only"):
        parse_recipe(recipe)
    # intrinsic signals value partial paths, so they are allowed; so is the checker as verifier
    recipe["scorers"] = [{"kind": "mean_logprob", "name": "check"}]
    recipe["sampling"] = {"logprobs": 0}
    assert parse_recipe(recipe).strategy.name == strategy
    if strategy in ("mcts", "a_star"):
        recipe["scorers"].append({"kind": "reference_answer", "name": "final"})
        recipe["strategy"] = {"name": strategy, "scorer": "check", "verifier": "final"}
        assert parse_recipe(recipe).strategy.name == strategy


def test_a_logprob_scorer_needs_logprobs_requested() -> None:
    recipe = {
        "engine": {"kind": "scripted"},
        "strategy": {"name": "best_of_n", "scorer": "conf"},
        "scorers": [{"kind": "self_certainty", "name": "conf"}],
        "sampling": {"logprobs": 0},
    }
    with pytest.raises(RecipeError, match=r"sampling.logprobs is 0; set sampling.logprobs: 2"):
        parse_recipe(recipe)
    recipe["sampling"] = {"logprobs": 5}
    assert parse_recipe(recipe).strategy.name == "best_of_n"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"method": "regex"}, "needs a pattern"),
        ({"method": "regex", "pattern": "answer ("}, "is not a regex"),
        ({"method": "regex", "pattern": "answer \\d+"}, "has no group"),
    ],
)
def test_an_answer_regex_must_compile_and_have_a_group(
    answer: dict[str, str], message: str
) -> None:
    recipe = {"engine": {"kind": "scripted"}, "strategy": {"name": "self_consistency"}}
    with pytest.raises(RecipeError, match=message):
        parse_recipe({**recipe, "answer": answer})


@pytest.mark.parametrize("strategy", ["mcts", "ab_mcts"])
def test_tree_searches_with_rollouts_may_judge_finished_rollouts_by_tests(strategy: str) -> None:
    # with rollouts the scorer only ever sees finished paths: a test-based judge is fine
    recipe = {
        "engine": {"kind": "scripted"},
        "strategy": {"name": strategy, "scorer": "tests", "rollout": True},
        "scorers": [{"kind": "reference_answer", "name": "tests"}],
    }
    assert parse_recipe(recipe).strategy.name == strategy
    recipe["strategy"] = {"name": strategy, "scorer": "tests", "rollout": False}
    with pytest.raises(RecipeError, match="only checks finished answers"):
        parse_recipe(recipe)


def test_mbr_judge_utility_needs_a_pairwise_scorer() -> None:
    recipe = {
        "engine": {"kind": "scripted"},
        "strategy": {"name": "mbr", "utility": "judge", "scorer": "one"},
        "scorers": [{"kind": "reference_answer", "name": "one"}],
    }
    with pytest.raises(RecipeError, match="judges one candidate at a time"):
        parse_recipe(recipe)


def _with_prm(strategy: dict[str, object], prm: dict[str, object]) -> dict[str, object]:
    return {
        "engine": {"kind": "scripted"},
        "strategy": {"name": "beam_search", "scorer": "rm", **strategy},
        "scorers": [
            {"kind": "prm", "name": "rm", "model": "some/prm", "format": "qwen_prm", **prm}
        ],
    }


def test_step_aggregation_is_declared_in_one_place() -> None:
    with pytest.raises(RecipeError, match="declare it in one place"):
        parse_recipe(_with_prm({"aggregation": "min"}, {"aggregation": {"method": "last"}}))
    # the reward model declares it: the search takes the scorer's own value
    assert parse_recipe(_with_prm({}, {"aggregation": {"method": "last"}})).aggregation() is None
    # the strategy declares it: the search folds the steps itself
    assert parse_recipe(_with_prm({"aggregation": "mean"}, {})).aggregation() == "mean"
    # neither: the strategy's default (none for beam search: the reward model's value)
    assert parse_recipe(_with_prm({}, {})).aggregation() is None
    pf = _with_prm({"name": "particle_filter"}, {})
    assert parse_recipe(pf).aggregation() == "last"  # particle filtering's own default
    pf_rm = _with_prm({"name": "particle_filter"}, {"aggregation": {"method": "min"}})
    assert parse_recipe(pf_rm).aggregation() is None  # the reward model's declaration wins

"""The strategies benchmark's rules: paired claims, the reference at equal cost, the test gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.strategies import (
    ORACLE,
    PRM_STRATEGIES,
    Progress,
    arm_names,
    parse_args,
    plan,
    run_order,
)
from benchmarks.strategies_claims import claims, claims_note, reference
from benchmarks.strategies_cost import compute
from branchwise.orchestrator.paired_stats import mcnemar_exact


def _row(
    arm: str, which: str, budget: int, right: list[bool], tokens: float, **extra: Any
) -> dict[str, Any]:
    return {
        "arm": arm, "set": which, "budget": budget, "temperature": 1.0, "config": {"n": budget},
        "accuracy": sum(right) / len(right), "tokens_per_problem": tokens,
        "compute_per_problem": tokens, **extra,
        "outcomes": [{"id": f"p{i}", "correct": c} for i, c in enumerate(right)],
    }  # fmt: skip


def _rows() -> list[dict[str, Any]]:
    n = 60
    greedy = [i % 2 == 0 for i in range(n)]  # 30 / 60
    sc = [i % 3 != 0 for i in range(n)]  # 40 / 60
    strong = [True] * 55 + [False] * 5
    return [
        _row("greedy", "baseline", 0, greedy, 10) | {"temperature": 0.0},
        _row("self_consistency", "sampling", 1, greedy, 40),
        _row("self_consistency", "sampling", 2, sc, 80),
        _row("best_of_n", "prm", 1, strong, 41),
        _row("ab_mcts", "prm", 1, sc, 39),
    ]


def test_reference_is_the_better_baseline_spending_at_least_as_much() -> None:
    rows = _rows()
    ref, short = reference(rows, rows[3], "tokens")  # 41 tokens: SC n=2 (80) is the first >= 41
    assert (ref["arm"], ref["budget"], short) == ("self_consistency", 2, False)
    ref, _ = reference(rows, rows[4], "tokens")  # 39: SC n=1 (= greedy's 30/60); greedy wins ties
    assert ref["arm"] == "greedy"
    ref, short = reference(rows, {**rows[3], "tokens_per_problem": 500}, "tokens")
    assert short and ref["budget"] == 2  # nothing costs as much: the costliest stands in, flagged


def test_claims_are_paired_and_holm_corrected_together() -> None:
    found = claims(_rows())
    # two rows x two cost axes, plus ab_mcts against best_of_n at the same budget
    assert len(found) == 5
    bon = next(c for c in found if c["arm"] == "best_of_n" and c["axis"] == "tokens")
    # best_of_n misses p55-59, SC every third problem: paired, 19 against 4 discordant
    assert (bon["only_a"], bon["only_b"]) == (19, 4)
    assert bon["p_value"] == pytest.approx(mcnemar_exact(19, 4)) and bon["p_value"] < 0.01
    assert bon["p_holm"] == pytest.approx(min(1.0, 5 * bon["p_value"]))  # the smallest p
    assert bon["verdict"] == "ahead" and bon["ci95"][0] > 0
    vs = next(c for c in found if c["axis"] == "same budget")
    assert vs["reference"] == "best_of_n 1x" and vs["verdict"] == "behind"
    assert all(c["p_holm"] >= c["p_value"] for c in found)


def test_rows_without_outcomes_make_no_claims() -> None:
    rows = [{k: v for k, v in r.items() if k != "outcomes"} for r in _rows()]
    assert claims(rows) == []


def test_compute_counts_prompt_generated_and_prm_tokens_by_their_models() -> None:
    row = {"set": "prm", "tokens_per_problem": 100.0, "prompt_tokens_per_problem": 300.0,
           "cache_hit_rate": 0.5, "prm_tokens_per_problem": 1000.0}  # fmt: skip
    out = compute(row, policy_params=10, prm_params=3)
    assert out["policy_compute_per_problem"] == 4000 and out["prm_compute_per_problem"] == 3000
    assert out["compute_per_problem"] == 7000 and out["cached_compute_per_problem"] == 1500
    assert compute({**row, "set": "oracle"}, 10, 3)["prm_compute_per_problem"] == 0


def test_the_test_split_needs_the_final_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--split", "test"])
    assert "only the final run may" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--final"])
    assert "add --split test" in capsys.readouterr().err
    args = parse_args(["--split", "test", "--final"])
    assert args.name == "strategies_test" and args.final


def test_oracle_rows_name_their_scorer_and_tuned_sampling_reaches_every_arm() -> None:
    tuned = {"self_consistency": {"temperature": 0.6, "top_p": 0.9}}
    rows = plan(["self_consistency", "best_of_n", "a_star_h0"], [1], True, tuned)
    oracle = [r for r in rows if r["set"] == "oracle"]
    assert oracle and all(r["config"]["scorer"] == ORACLE for r in oracle)
    # a verifier naming the PRM names the oracle's scorer in the oracle rows
    assert next(r for r in rows if r["arm"] == "a_star_h0")["config"]["verifier"] == "prm"
    assert next(r for r in oracle if r["arm"] == "a_star_h0")["config"]["verifier"] == ORACLE
    assert all(r["config"]["scorer"] == "prm" for r in rows if r["set"] == "prm")
    sc = [r for r in rows if r["arm"] in ("self_consistency", "single_sample")]
    assert all((r["temperature"], r["top_p"]) == (0.6, 0.9) for r in sc)
    assert next(r for r in rows if r["arm"] == "greedy")["temperature"] == 0.0
    assert next(r for r in rows if r["arm"] == "best_of_n")["temperature"] == 1.0  # untuned


def test_tuning_keeps_the_untuned_cell_on_ties_and_grids_every_arm_alike() -> None:
    from benchmarks.strategies_tuning import SAMPLING_GRID, best_cells, sampling_grid

    assert SAMPLING_GRID[0] == {"temperature": 1.0, "top_p": 1.0} and len(SAMPLING_GRID) == 6
    rows = sampling_grid(2, ["self_consistency", "best_of_n"])
    assert len(rows) == 12 and all(r["budget"] == 2 for r in rows)
    scored = [{**r, "accuracy": 0.5} for r in rows]
    scored[3]["accuracy"] = 0.6  # self_consistency, fourth cell
    chosen = best_cells(scored)
    assert chosen["self_consistency"] == SAMPLING_GRID[3]
    assert chosen["best_of_n"] == SAMPLING_GRID[0]  # all tied: untuned kept


def test_progress_keys_tell_sampling_apart_and_keep_old_rows() -> None:
    from benchmarks.strategies import Progress

    row = {"arm": "best_of_n", "set": "prm", "budget": 1, "temperature": 1.0, "config": {}}
    assert Progress.key(row) == Progress.key({**row, "top_p": 1.0})  # rows from before top-p
    assert Progress.key(row) != Progress.key({**row, "top_p": 0.9})


def test_a_row_whose_engine_died_is_not_kept_as_a_measurement(tmp_path: Path) -> None:
    """An OOM-killed engine fails every problem of the row: resuming must rerun it."""
    settings = {"problems": 2}
    error = "EngineError: ... EngineDeadError: EngineCore ..."
    dead = {"arm": "mbr", "set": "sampling", "budget": 2, "temperature": 1.0, "config": {},
            "errors": 2, "first_error": error}  # fmt: skip
    alive = {**dead, "arm": "rpc", "errors": 0, "first_error": None}
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (settings, dead, alive)) + "\n")
    progress = Progress(path, settings)
    assert progress.get(dead) is None
    assert progress.get(alive) == alive


def test_a_merge_refuses_rows_measured_with_other_prm_weights(tmp_path: Path) -> None:
    from benchmarks.strategies import merged

    earlier = {"problems": 4, "budgets": [1], "seed": 0, "split": "eval", "rows": [],
               "total_seconds": 1.0, "prm_sha256": "old"}  # fmt: skip
    path = tmp_path / "strategies.json"
    path.write_text(json.dumps(earlier))
    rerun = {**earlier, "prm_sha256": "new", "total_seconds": 2.0, "cost_rule": 2}
    args = parse_args(["--merge", "--strategies", "beam_search"])
    with pytest.raises(SystemExit, match="other PRM weights"):
        merged(rerun, path, args)
    path.write_text(json.dumps({k: v for k, v in earlier.items() if k != "prm_sha256"}))
    with pytest.raises(SystemExit, match="does not record them"):
        merged(rerun, path, args)
    path.write_text(json.dumps({**earlier, "prm_sha256": "new"}))
    both = merged(rerun, path, args)
    assert both["total_seconds"] == 3.0 and both["cost_rule"] == 2  # the rerun's rule


def test_methods_meet_their_natural_baseline_and_the_headline_counts_only_the_common_one() -> None:
    n = 60
    rows = [
        *_rows(),
        _row("beam_search", "prm", 1, [i % 2 == 0 for i in range(n)], 50),
        _row("beam_search", "prm", 2, [i % 3 != 0 for i in range(n)], 90),
        _row("diverse_beam_search", "prm", 1, [True] * 58 + [False] * 2, 60),
        _row("diverse_beam_search", "prm", 4, [True] * 58 + [False] * 2, 120),
    ]
    found = claims(rows)
    own = [c for c in found if c["kind"] == "natural"]
    # two diverse rows x two axes; 60 tokens meets beam 2x (90), 120 outspends every beam row
    assert [(c["budget"], c["axis"], c["reference"], c["reference_short"]) for c in own] == [
        (1, "tokens", "beam_search n=2", False),
        (1, "compute", "beam_search n=2", False),
        (4, "tokens", "beam_search n=2", True),
        (4, "compute", "beam_search n=2", True),
    ]
    assert (own[0]["only_a"], own[0]["only_b"]) == (20, 2)  # beam 2x misses every third
    assert all(c["p_holm"] >= c["p_value"] for c in found)  # one Holm family for all
    note = "\n".join(claims_note(found, ["beam_search", "diverse_beam_search", "best_of_n"]))
    assert "natural baseline" in note and "diverse_beam_search 1x" in note
    assert "diverse_beam_search 4x [prm, tokens] vs beam_search n=2" in note  # flagged short
    # the headline (target 8) counts claims against greedy / tuned SC only
    headline = next(line for line in note.splitlines() if "at 4x" in line)
    assert "of 1 measured" in headline


def test_the_headline_rows_run_first_and_every_arm_runs_once() -> None:
    order = run_order(arm_names())
    assert sorted(order) == sorted(arm_names())
    assert order[: 1 + len(PRM_STRATEGIES)] == ["self_consistency", *PRM_STRATEGIES]
    assert order.index("target_only") < order.index("deepconf")
    assert order.index("ab_mcts_m_adaptive") < order.index("power_sampling")


def test_the_tuning_section_reads_each_spread_against_the_standard_error() -> None:
    from benchmarks.strategies_tuning import section

    def cell(arm: str, t: float, accuracy: float) -> dict[str, Any]:
        return {"arm": arm, "knobs": {"temperature": t}, "accuracy": accuracy, "stderr": 0.05}

    data = {"problems": 100, "budget": 2, "prm": "p", "prm_sha256": "abc",
            "sampling_rows": [cell("sc", 1.0, 0.45), cell("sc", 0.8, 0.48), cell("sc", 0.6, 0.48),
                              cell("beam", 1.0, 0.55), cell("beam", 0.6, 0.67)]}  # fmt: skip
    text = section(data)
    assert "1 of 2 arms' cells lie within two standard errors" in text and "wider: beam." in text
    assert "| sc | 3 | temperature=0.8 | 0.480 | 0.450 | 3.0 | 5.0 |" in text  # first best kept
    assert "PRM knobs" not in text  # no knob rows yet


def test_rows_mixed_with_older_rows_pair_only_with_rows_that_keep_outcomes() -> None:
    rows = _rows()
    older = [{**r, "outcomes": None} for r in rows if r["arm"] in ("greedy", "self_consistency")]
    newer = [r for r in rows if r["arm"] not in ("greedy", "self_consistency")]
    found = claims(older + newer)
    assert found and all(c["kind"] == "same budget" for c in found)  # no baseline to pair with
    assert all(c["shared"] == 60 for c in found)
    mixed = claims([*older, rows[2], *newer])  # SC 2x keeps its outcomes: the only reference
    assert {c["reference"] for c in mixed if c["kind"] == "baseline"} == {"self_consistency n=2"}


def test_a_partial_test_run_names_its_data_file_and_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.strategies as bench

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    args = parse_args(["--split", "test", "--final", "--partial"])
    settings = {"problems": 4, "budgets": [1], "seed": 0, "concurrency": 1, "merge": False,
                "split": "test", "data_sha256": "x", "prm_sha256": "y"}  # fmt: skip
    (tmp_path / "strategies_test.progress.jsonl").write_text(json.dumps(settings) + "\n")
    data = bench.partial(args)
    assert data["data_file"] == "examples/testbed/data/test.jsonl" and data["final"]
    assert data["split"] == "test" and data["prm_sha256"] == "y"
    assert data["rows"] == [] and data["partial"].startswith("0 of the ")


def test_a_single_path_strategy_is_held_to_the_one_budget_it_ran() -> None:
    from benchmarks.strategies_report import targets

    def point(arm: str, budget: int, difference: float) -> dict[str, Any]:
        return {"set": "prm", "arm": arm, "budget": budget, "inside": True,
                "difference": difference}  # fmt: skip

    sc = [_row("self_consistency", "sampling", b, [True, False], 40 * b) for b in (1, 2)]
    comparison = [point("best_of_n", 1, 0.1), point("best_of_n", 2, 0.1), point("rsd", 1, 0.2)]
    names = ["best_of_n", "rsd"]
    data: dict[str, Any] = {
        "rows": sc,
        "budgets": [1, 2, 4, 8],
        "prm_strategies": names,
        "comparison": comparison,
    }
    line = targets(data)[2]
    assert "rsd ran one budget" in line and ": met." in line
    comparison[2]["difference"] = -0.1
    assert "**missed**; not: rsd (0/1)" in targets(data)[2]
    data["comparison"] = [comparison[0], comparison[2]]
    assert "best_of_n (1/1)" in targets(data)[2]  # one row of a strategy that runs several


def test_a_rows_cost_includes_what_its_llm_scorer_spent_on_the_policy() -> None:
    from benchmarks.strategies_report import summarise
    from branchwise.orchestrator.results import ProblemResult

    usage: dict[str, float | int] = {
        "generated_tokens": 80, "prompt_tokens": 20, "cached_prompt_tokens": 10,
        "scorer_generated_tokens": 120, "scorer_prompt_tokens": 380,
        "scorer_cached_prompt_tokens": 190,
    }  # fmt: skip
    row = summarise([ProblemResult("p0", "4", reference="4", correct=True, usage=usage)])
    assert row["tokens_per_problem"] == 200 and row["outcomes"][0]["tokens"] == 200
    assert row["scorer_generated_tokens_per_problem"] == 120
    assert row["prompt_tokens_per_problem"] == 400 and row["cache_hit_rate"] == 0.5


def test_a_natural_claim_that_repeats_the_common_one_is_not_made_twice() -> None:
    n = 60
    better_sc = [i % 5 != 0 for i in range(n)]  # 48 / 60: SC beats greedy (30 / 60)
    rows = [
        _row("greedy", "baseline", 0, [i % 2 == 0 for i in range(n)], 10) | {"temperature": 0.0},
        _row("self_consistency", "sampling", 1, better_sc, 40),
        _row("rpc", "sampling", 1, [True] * 50 + [False] * 10, 40),
    ]
    found = [c for c in claims(rows) if c["arm"] == "rpc"]
    # the common reference is SC n=1, rpc's natural baseline too: one claim per axis, not two
    assert [(c["kind"], c["axis"], c["reference"]) for c in found] == [
        ("baseline", "tokens", "self_consistency n=1"),
        ("baseline", "compute", "self_consistency n=1"),
    ]

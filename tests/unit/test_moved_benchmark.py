"""benchmarks/moved.py: the before/after table of rerun strategies' benchmark rows."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.moved import compared, rows_at, section


def row(arm: str, budget: int, right: list[bool] | None, accuracy: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "arm": arm, "set": "sampling", "budget": budget, "accuracy": accuracy,
        "tokens_per_problem": 100.0 * budget, "stderr": 0.02,
    }  # fmt: skip
    if right is not None:
        out["outcomes"] = [{"id": f"p{i}", "correct": ok} for i, ok in enumerate(right)]
    return out


def test_rows_with_outcomes_compare_paired_and_holm_corrected() -> None:
    before = [row("beam_search", 1, [True] * 10 + [False] * 30, 0.25),
              row("beam_search", 2, [False] * 40, 0.0)]  # fmt: skip
    after = [row("beam_search", 1, [True] * 30 + [False] * 10, 0.75),
             row("beam_search", 2, [False] * 39 + [True], 0.025)]  # fmt: skip
    one, two = compared(before, after, ["beam_search"])
    assert one["paired"] and two["paired"]
    assert one["difference"] == pytest.approx(0.5)
    assert one["p_value"] < 1e-4 and one["holm_p"] == pytest.approx(2 * one["p_value"])
    assert two["holm_p"] == pytest.approx(1.0)
    assert one["ci95"][0] > 0


def test_rows_without_outcomes_get_the_unpaired_standard_error() -> None:
    (entry,) = compared([row("deepconf", 4, None, 0.45)], [row("deepconf", 4, [True], 0.40)],
                        ["deepconf"])  # fmt: skip
    assert not entry["paired"]
    assert entry["stderr"] == pytest.approx(0.02 * 2**0.5)
    text = section([entry], "abc123", "strategies", "python benchmarks/moved.py ...")
    assert "| deepconf | sampling | 4x | 0.450 | 0.400 | -0.050 | unpaired SE 0.028 |" in text


def test_arms_not_rerun_and_rows_on_one_side_only_are_left_out() -> None:
    before = [row("mcts", 1, None, 0.5), row("deepconf", 1, None, 0.4)]
    after = [
        row("mcts", 1, None, 0.6),
        row("deepconf", 1, None, 0.4),
        row("deepconf", 2, None, 0.5),
    ]
    assert [(e["arm"], e["budget"]) for e in compared(before, after, ["deepconf"])] == [
        ("deepconf", 1)
    ]


def test_an_unknown_revision_is_one_line() -> None:
    with pytest.raises(SystemExit, match=r"git has no benchmarks/results/strategies\.json"):
        rows_at("no-such-revision", "strategies")

"""The peer benchmarks' reports: rotating order, per-repeat ratios, the target per case."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import ROOT
from benchmarks.peers import arm_order, report, settings, variant_name
from benchmarks.peers_first_result import section


def _run(wall: float, engine: float, **extra: Any) -> dict[str, Any]:
    return {
        "wall_seconds": wall, "cpu_seconds": 1.0, "correct": 80, "server_generated_tokens": 100,
        "mean_running_requests": 90.0, "generation_tokens_per_second": 100 / wall,
        "server_engine_cpu_seconds": engine, "server_computed_tokens": 300,
        "server_engine_steps": 30, **extra,
    }  # fmt: skip


def _case(problems: int, served: str, theirs: list[float], ours: list[float]) -> dict[str, Any]:
    return {
        "problems": problems,
        "served_name": served,
        "repeats": len(ours),
        "policy": str(ROOT / "examples/testbed/models/policy"),
        "server_layout": "small-cpu",
        "results": {
            "particle_filter": {
                "its_hub": [_run(w, 5.0) for w in theirs],
                "branchwise": [_run(w, 4.5) for w in ours],
            }
        },
    }


def test_each_arm_runs_first_and_last_in_turn() -> None:
    arms = ["its_hub", "branchwise", "branchwise (stop_tokens=false)"]
    orders = [arm_order(arms, repeat) for repeat in range(6)]
    assert all(sorted(order) == sorted(arms) for order in orders)
    assert [order[0] for order in orders] == arms * 2
    assert [order[-1] for order in orders] == [arms[2], arms[0], arms[1]] * 2
    assert variant_name(settings(["stop_tokens=false"])) == "branchwise (stop_tokens=false)"


def test_the_peer_report_gives_each_repeats_ratio_and_tolerates_older_runs() -> None:
    case = _case(100, "policy", [6.0, 9.0], [5.0, 6.0])
    del case["results"]["particle_filter"]["branchwise"][0]["server_computed_tokens"]
    case["results"]["particle_filter"]["branchwise (stop_tokens=false)"] = [
        _run(6.0, 5.0),
        _run(9.0, 5.0),
    ]
    text = report(case)
    assert "per repeat 1.20, 1.50" in text
    assert "; branchwise (stop_tokens=false): 1.00x" in text
    # a run recorded before the server's computed-token counter was read: "-", not a number
    branchwise_row = next(line for line in text.splitlines() if "| branchwise |" in line)
    assert branchwise_row.endswith("| - | 30 |")
    assert text.count("| 300 | 30 |") == 2  # its_hub and the other arm have theirs


def test_each_case_is_met_or_missed_by_its_median_ratio() -> None:
    data = {
        "runs": [
            _case(100, "policy", [6.0, 6.6, 6.0], [5.0, 5.0, 5.0]),
            _case(400, "toy-math-policy", [20.0, 22.0, 21.0], [19.0, 18.0, 20.0]),
        ]
    }
    rows = [
        line
        for line in section(data).splitlines()
        if line.startswith("| 100") or line.startswith("| 400")
    ]
    assert "**1.20x**" in rows[0] and rows[0].endswith("| met |")
    assert "1.20 1.32 1.20" in rows[0]
    assert "**1.11x**" in rows[1] and rows[1].endswith("| missed |")
    assert "`toy-math-policy`" in rows[1]

"""The BENCHMARKS.md sections of osca, allocation, speculative_speed and arithmetic_sampling:
generated from the committed results alone (what ``--render`` writes)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks import allocation, arithmetic_sampling, osca, speculative_speed
from benchmarks.markdown import RESULTS


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def test_osca_section_names_split_command_and_the_real_runs() -> None:
    data = _load("osca")
    body = osca.section(data)
    assert "(val split)" in body and f"`{data['command']}`" in body
    assert "-0.0" not in body  # a rounded-away difference shows as +0.0
    assert body.count("\n| vote |") == sum(r["objective"] == "vote" for r in data["rows"])
    assert "Real runs at 8 samples" in body and "exact McNemar p" in body
    assert osca._points(-0.0001) == "+0.0" and osca._points(0.043) == "+4.3"


def test_allocation_section_sums_the_paired_counts() -> None:
    data = _load("allocation")
    body = allocation.section(data)
    only_a = sum(r["agreement_vs_uniform"]["only_a"] for r in data["rows"])
    only_b = sum(r["agreement_vs_uniform"]["only_b"] for r in data["rows"])
    assert f"{only_a} problems were right only with it and {only_b} only" in body
    assert "(val split)" in body and f"`{data['command']}`" in body


def test_speculative_section_rebuilds_a_missing_command() -> None:
    data = _load("speculative_speed_val")
    data.pop("command", None)
    body = speculative_speed.section(data)
    assert f"--problems {data['problems']} --n {data['n']}` (rebuilt" in body
    assert "one problem at a time, drafting writes" in body
    recorded = speculative_speed.section({**data, "command": "python x.py --n 8"})
    assert "Command: `python x.py --n 8`." in recorded


def test_arithmetic_section_compares_at_each_n() -> None:
    data = _load("arithmetic_sampling")
    assert data["split"] == "val"
    body = arithmetic_sampling.section(data)
    for n in {line["n"] for line in data["summary"]}:
        assert f"At N={n} arithmetic sampling repeats" in body
    assert "--seeds 0,1" in arithmetic_sampling.command(
        {k: v for k, v in data.items() if k != "command"}
    )

"""Branchwise over HTTP against its_hub, particle filtering, in the cases a new user meets first.

Four cases, each on a fresh ``vllm serve`` of the testbed policy (``benchmarks/peers.py``'s
server, clients and rotating order, with Branchwise without stop tokens as a third arm): 100
and 400 problems, with the policy served under its folder's name and under another one
(``toy-math-policy``), where the client can only find the policy's tokenizer through the
``root`` that ``/v1/models`` reports. The target (issue 25): Branchwise at least 1.2x
its_hub's problems/s in every case.

    python benchmarks/peers_first_result.py [--repeats-100 6] [--repeats-400 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import ROOT, run_or_render, table
from benchmarks.peers import SERVED_NAME, compare, main_async, median, variant_name
from branchwise.orchestrator.help_format import HelpWithDefaults

OTHER_NAME = "toy-math-policy"
TARGET = 1.2
ABLATION = {"stop_tokens": False}  # a third arm: what stopping on tokens is worth


def cases(args: argparse.Namespace) -> list[tuple[int, str, int]]:
    """(problems, served name, repeats) of each case."""
    return [
        (100, SERVED_NAME, args.repeats_100),
        (100, OTHER_NAME, args.repeats_100),
        (400, SERVED_NAME, args.repeats_400),
        (400, OTHER_NAME, args.repeats_400),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for problems, served_name, repeats in cases(args):
        peers_args = argparse.Namespace(
            problems=problems, concurrency=32, budget=8, strategies="particle_filter",
            repeats=repeats, server_layout="small-cpu", peer_python=None, engine={},
            served_name=served_name, also=[ABLATION],
        )  # fmt: skip
        data = asyncio.run(main_async(peers_args))
        runs.append({"served_name": served_name, **data})
        print(section({"runs": runs}), flush=True)
    return {"runs": runs, "target": TARGET}


def section(data: dict[str, Any]) -> str:
    rows = []
    for case in data["runs"]:
        arms = case["results"]["particle_filter"]
        theirs, ours = arms["its_hub"], arms["branchwise"]
        found = compare(arms)
        without = found.others.get(variant_name(ABLATION))
        rows.append([
            case["problems"], f"`{case['served_name']}`", case["repeats"],
            f"{median(theirs, 'wall_seconds'):.1f}", f"{median(ours, 'wall_seconds'):.1f}",
            f"**{found.ratio:.2f}x**", " ".join(f"{r:.2f}" for r in found.per_repeat),
            "-" if without is None else f"{without:.2f}x", f"{found.ceiling:.2f}x",
            f"{median(theirs, 'correct'):.0f} / {median(ours, 'correct'):.0f}",
            "met" if found.ratio >= TARGET else "missed",
        ])  # fmt: skip
    body = table(
        ["problems", "served as", "repeats", "its_hub wall s", "Branchwise wall s",
         "Branchwise / its_hub", "per repeat", "without stop tokens", "ceiling",
         "correct (its_hub / Branchwise)", f"{TARGET}x"],
        rows,
    )  # fmt: skip
    policy = Path(data["runs"][0]["policy"]).relative_to(ROOT) if data["runs"] else "policy"
    return (
        "## A fast first result over HTTP: Branchwise against its_hub, particle filtering\n\n"
        f"Particle filtering with 8 particles, 32 problems at a time, each case on a fresh "
        f"`vllm serve` of `{policy}` (layout `small-cpu`), its_hub and Branchwise in turn "
        "(which runs first rotates); medians over the repeats. `policy` is the "
        f"folder's own name; under `{OTHER_NAME}` the client finds the tokenizer through "
        "`/v1/models`. The ceiling is its_hub's wall time over the engine CPU the work needs "
        '(no client can gain more on this server). "Without stop tokens" is a third arm, '
        "Branchwise with `stop_tokens: false`, in the same rotation. Target: Branchwise at least "
        f"{TARGET}x its_hub in every case.\n"
        "Command: `python benchmarks/peers_first_result.py`.\n\n" + body + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--repeats-100", type=int, default=6, help="repeats at 100 problems")
    parser.add_argument("--repeats-400", type=int, default=4, help="repeats at 400 problems")
    parser.add_argument("--render", action="store_true", help="rewrite the saved results' section")
    args = parser.parse_args()
    run_or_render("peers_first_result", args.render, lambda: run(args), section)


if __name__ == "__main__":
    main()

"""What moved when strategies changed: their strategies-benchmark rows before and after a rerun.

Reads the results file as committed at ``--before`` (a git revision) and as it is now, and for
each rerun arm, set and budget prints accuracy and generated tokens on both sides with the
difference. Rows that both keep per-problem outcomes are compared paired (exact McNemar and a
bootstrap interval, Holm-corrected over the table); older rows without outcomes get the
difference and its unpaired standard error only. The table goes into BENCHMARKS.md as
``moved_<name>``.

    python benchmarks/moved.py --before REV --strategies beam_search,deepconf [--name strategies]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import RESULTS, ROOT, table, write_section
from benchmarks.strategies_claims import outcomes
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.paired_stats import holm, paired_test


def rows_at(revision: str, name: str) -> list[dict[str, Any]]:
    """The rows of ``benchmarks/results/<name>.json`` as committed at ``revision``."""
    path = f"benchmarks/results/{name}.json"
    shown = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise SystemExit(f"--before {revision}: git has no {path} there ({shown.stderr.strip()})")
    rows: list[dict[str, Any]] = json.loads(shown.stdout)["rows"]
    return rows


def compared(
    before: list[dict[str, Any]], after: list[dict[str, Any]], arms: list[str]
) -> list[dict[str, Any]]:
    """One entry per (arm, set, budget) present on both sides, in the new table's order."""
    old = {(r["arm"], r["set"], r["budget"]): r for r in before}
    out: list[dict[str, Any]] = []
    for row in after:
        key = (row["arm"], row["set"], row["budget"])
        if row["arm"] not in arms or key not in old:
            continue
        prior = old[key]
        entry: dict[str, Any] = {
            "arm": row["arm"], "set": row["set"], "budget": row["budget"],
            "before": prior["accuracy"], "after": row["accuracy"],
            "tokens_before": prior["tokens_per_problem"], "tokens_after": row["tokens_per_problem"],
            "difference": row["accuracy"] - prior["accuracy"],
        }  # fmt: skip
        if row.get("outcomes") and prior.get("outcomes"):
            test = paired_test(outcomes(row), outcomes(prior))
            entry.update(paired=True, p_value=test.p_value, ci95=list(test.ci95))
        else:
            se = math.hypot(prior.get("stderr", 0.0), row.get("stderr", 0.0))
            entry.update(paired=False, stderr=se)
        out.append(entry)
    paired = [e for e in out if e["paired"]]
    for entry, adjusted in zip(paired, holm([e["p_value"] for e in paired]), strict=True):
        entry["holm_p"] = adjusted
    return out


def section(entries: list[dict[str, Any]], before: str, name: str, command: str) -> str:
    def test_cell(e: dict[str, Any]) -> str:
        if e["paired"]:
            low, high = e["ci95"]
            return f"paired: [{low:+.3f}, {high:+.3f}], Holm p = {e['holm_p']:.3g}"
        beyond = abs(e["difference"]) > 1.96 * e["stderr"]
        return f"unpaired SE {e['stderr']:.3f}" + (" (beyond 1.96 SE)" if beyond else "")

    rows = [
        [e["arm"], e["set"], f"{e['budget']}x", f"{e['before']:.3f}", f"{e['after']:.3f}",
         f"{e['difference']:+.3f}", test_cell(e),
         f"{e['tokens_before']:.0f} -> {e['tokens_after']:.0f}"]
        for e in entries
    ]  # fmt: skip
    head = (
        f"### What moved: `{name}` rows rerun after the strategies changed (before: `{before}`)\n\n"
        f"`{command}`\n\n"
    )
    return head + table(
        ["arm", "set", "budget", "before", "after", "difference", "test", "tokens before -> after"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--before", required=True, help="git revision of the earlier results")
    parser.add_argument("--strategies", required=True, help="comma-separated rerun arms")
    parser.add_argument("--name", default="strategies", help="results name (default strategies)")
    args = parser.parse_args()
    arms = [s for s in args.strategies.split(",") if s.strip()]
    after_path = RESULTS / f"{args.name}.json"
    if not after_path.exists():
        raise SystemExit(f"no results at {after_path}")
    after = json.loads(after_path.read_text())["rows"]
    entries = compared(rows_at(args.before, args.name), after, arms)
    if not entries:
        raise SystemExit(f"no rows of {arms} on both sides")
    command = " ".join(["python benchmarks/moved.py", *sys.argv[1:]])
    body = section(entries, args.before, args.name, command)
    print(body)
    write_section(f"moved_{args.name}", body)


if __name__ == "__main__":
    main()

"""``branchwise report``: one self-contained HTML page (and a markdown twin) over runs.

The page holds a plot of accuracy against generated tokens per problem (one point per run,
with its 95% interval; a run of a voting strategy adds its accuracy-at-N curve, each N at
N/n of the run's tokens), a table per run with intervals, pass@k and costs, and the worst
problems (failed or wrong in the most runs) with links to their trace pages, which are
written beside the report for problems whose graph was stored (``eval --traces``).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from branchwise.orchestrator.metrics import RunMetrics, run_metrics
from branchwise.orchestrator.store import ResultStore
from branchwise.orchestrator.trace import write_trace

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("branchwise.orchestrator", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
)
PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#4e342e"]


@dataclass
class RunView:
    name: str
    folder: Path
    strategy: str
    budget: int | None
    metrics: RunMetrics
    records: list[dict[str, Any]]
    colour: str


def _runs(stores: Sequence[ResultStore]) -> list[RunView]:
    views = []
    for index, store in enumerate(stores):
        info = store.run_info()
        recipe = info.recipe if info else {}
        strategy = str((recipe.get("strategy") or {}).get("name", "?"))
        budget = (recipe.get("budget") or {}).get("max_generated_tokens")
        records = store.records()
        views.append(
            RunView(
                name=run_names([s.folder for s in stores])[index],
                folder=store.folder,
                strategy=strategy,
                budget=budget,
                metrics=run_metrics(records),
                records=records,
                colour=PALETTE[index % len(PALETTE)],
            )
        )
    return views


def run_names(folders: Sequence[Path]) -> list[str]:
    """Each run named by its path below the folders' common parent (``sweep-a/budget-256``),
    so two sweeps' ``budget-256`` never collide; one run is named by its folder."""
    resolved = [f.resolve() for f in folders]
    if len(resolved) == 1:
        return [resolved[0].name]
    common = Path(os.path.commonpath(resolved))
    if common in resolved:  # one run inside another's folder: name them from one level up
        common = common.parent
    return [str(f.relative_to(common)) for f in resolved]


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2, 2.5 or 5 times 10^k)."""
    raw = max(top, 1e-9) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    last = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(last + 1)]


def outcome_text(record: dict[str, Any] | None) -> str:
    """One run's outcome on one problem, in words (never a Python ``None``)."""
    if record is None:
        return "-"
    if record.get("error"):
        return f"failed ({record['error']})"
    answer = record.get("answer")
    said = "no answer" if answer is None else str(answer)
    reference = record.get("reference")
    if reference is None:
        return f"{said} (ungraded)"
    verdict = "right" if record.get("correct") else "wrong"
    return f"{verdict}: {said} (ref {reference})"


def plot_svg(runs: Sequence[RunView], width: int = 640, height: int = 360) -> str:
    """Accuracy (with 95% intervals) against generated tokens per problem, as inline SVG."""
    points: list[tuple[float, float, float, float, str, str]] = []
    curves: list[tuple[list[tuple[float, float]], str]] = []
    for run in runs:
        m = run.metrics
        points.append((m.tokens_per_problem, m.accuracy, *m.ci95, run.colour, run.name))
        if m.accuracy_at:
            widest = max(m.accuracy_at)
            curve = [(m.tokens_per_problem * n / widest, a) for n, a in m.accuracy_at.items()]
            curves.append((curve, run.colour))
    xs = [p[0] for p in points] + [x for c, _ in curves for x, _ in c]
    ticks = nice_ticks(max([*xs, 1.0]) * 1.05)
    x_max = ticks[-1]
    left, right, top, bottom = 60, 20, 20, 50
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * x / x_max

    def sy(y: float) -> float:
        return top + ph * (1 - y)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="plot" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="accuracy against tokens">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#888"/>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = sy(tick)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y}" y2="{y}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{tick:.2f}</text>')
    for x_val in ticks:
        label = f"{x_val:g}"
        parts.append(
            f'<text x="{sx(x_val):.1f}" y="{top + ph + 18}" text-anchor="middle">{label}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">generated tokens '
        "per problem</text>"
    )
    parts.append(
        f'<text transform="rotate(-90)" x="{-(top + ph / 2)}" y="16" '
        'text-anchor="middle">accuracy</text>'
    )
    for curve, colour in curves:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in curve)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-dasharray="4 3"/>'
        )
    for x, acc, lo, hi, colour, name in points:
        parts.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{sy(lo):.1f}" y2="{sy(hi):.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(
            f'<circle class="run-point" cx="{sx(x):.1f}" cy="{sy(acc):.1f}" r="5" '
            f'fill="{colour}"><title>{html.escape(name)}: '
            f"{acc:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def worst_problems(runs: Sequence[RunView], count: int) -> list[dict[str, Any]]:
    """Problems failed or wrong in the most runs (then the costliest), with each run's row."""
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    order: dict[str, int] = {}
    for run in runs:
        for record in run.records:
            by_id.setdefault(record["problem_id"], {})[run.name] = record
            order.setdefault(record["problem_id"], record["position"])

    def badness(pid: str) -> tuple[int, int, int]:
        rows = by_id[pid].values()
        failed = sum(1 for r in rows if r.get("error"))
        wrong = sum(1 for r in rows if r.get("reference") is not None and not r.get("correct"))
        tokens = sum(int((r.get("usage") or {}).get("generated_tokens", 0)) for r in rows)
        return failed + wrong, failed, tokens

    ranked = sorted(by_id, key=lambda p: (*(-v for v in badness(p)), order[p]))
    return [
        {"problem_id": pid, "bad": badness(pid)[0], "runs": by_id[pid]}
        for pid in ranked[:count]
        if badness(pid)[0] > 0
    ]


def write_report(stores: Sequence[ResultStore], out: Path, *, worst: int = 10) -> tuple[Path, Path]:
    """Write ``out`` (HTML) and ``out`` with ``.md``; return both paths."""
    runs = _runs(stores)
    rows = worst_problems(runs, worst)
    traces_dir = out.with_name(out.stem + "_traces")
    links: dict[tuple[str, str], str] = {}
    for row in rows:
        for run in runs:
            store = next(s for s in stores if s.folder == run.folder)
            record = row["runs"].get(run.name)
            if record is None:
                continue
            graph = store.graph(row["problem_id"])
            if graph is None:
                continue
            page = traces_dir / f"{_slug(run.name)}-{_slug(row['problem_id'])}.html"
            write_trace(graph, record, page, format="html")
            links[(row["problem_id"], run.name)] = f"{traces_dir.name}/{page.name}"
    context = {
        "runs": runs,
        "worst": rows,
        "links": links,
        "plot": plot_svg(runs),
        "outcome": outcome_text,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_TEMPLATES.get_template("report.html.j2").render(**context), encoding="utf-8")
    markdown = out.with_suffix(".md")
    markdown.write_text(_TEMPLATES.get_template("report.md.j2").render(**context), encoding="utf-8")
    return out, markdown


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)

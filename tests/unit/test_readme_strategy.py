"""README's "Write a strategy" example, run exactly as written, in a fresh process.

The code block is cut out of README.md, saved as a module and imported by a child process
that then runs a scripted-engine recipe naming the new strategy, so the README cannot drift
from a strategy that works; it must stay under 60 lines and use only the port (core) and the
strategies' own base, never the orchestrator.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.path.insert(0, sys.argv[1])
    import greedy_steps  # noqa: F401  (the README's code registers the strategy)
    from branchwise import Orchestrator, parse_recipe
    from branchwise.orchestrator.engines.scripted import ScriptedEngine
    from tests.conftest import make_problem, teach

    recipe = parse_recipe({
        "engine": {"kind": "scripted"},
        "strategy": {"name": "greedy_steps", "k": 3, "scorer": "prm"},
        "scorers": [{"kind": "reference_steps", "name": "prm"}],
        "sampling": {"temperature": 1.0, "max_tokens": 48},
        "seed": 1,
    })
    problems = [make_problem(i) for i in range(6)]
    engine = ScriptedEngine(error_rate=0.4)
    teach(engine, problems)

    async def go():
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    out = []
    for r in asyncio.run(go()):
        g = r.graph
        kept = []  # along the answer's path: was each step the best-valued of its siblings?
        for node in g.path(r.node_id)[1:] if r.node_id else []:
            siblings = [c for c in g.children(node.parent_id) if g.score(c.id, "prm")]
            best = max(g.score(c.id, "prm").value for c in siblings)
            kept.append(g.score(node.id, "prm").value == best)
        out.append({"answer": r.answer, "correct": r.correct, "error": r.error,
                    "kept_best": kept, "pruned": sum(g.state(n.id).status == "pruned"
                                                     for n in g.nodes())})
    print(json.dumps(out))
    """
)


def readme_strategy_code() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Write a strategy") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


def test_the_readme_strategy_is_short_and_uses_only_the_port() -> None:
    code = readme_strategy_code()
    assert len(code.strip().splitlines()) < 60
    imported = {
        node.module
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(m.startswith("branchwise.orchestrator") for m in imported), imported
    assert "branchwise.core.port" in imported


def test_the_readme_strategy_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "greedy_steps.py").write_text(readme_strategy_code())
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(r["error"] is None for r in results)
    assert all(r["answer"] is not None for r in results)
    # greedy: every step on the answer's path was the best-valued of its siblings
    assert all(all(r["kept_best"]) and r["kept_best"] for r in results)
    assert sum(r["pruned"] for r in results) > 0
    assert sum(bool(r["correct"]) for r in results) >= 4  # an oracle PRM steers it right

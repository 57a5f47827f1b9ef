"""Third-party plugins: a package registers a strategy and a scorer through entry points.

The throw-away package is written to a temporary folder with its own ``dist-info`` (what
``pip install`` would leave) and put on the path of a child process only: nothing is
installed into the environment the tests run in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

PLUGIN = textwrap.dedent(
    '''
    """A plugin: the shortest of n samples, by a brevity scorer."""
    from typing import Literal

    from branchwise.core.graph import Score
    from branchwise.core.scorers import Scorer
    from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig


    class ShortestConfig(StrategyConfig):
        name: Literal["shortest"] = "shortest"
        n: int = 4
        scorer: str = "brevity"


    class Shortest(Strategy):
        config_model = ShortestConfig
        description = "keep the sample the scorer likes best"

        async def search(self, ctx):
            nodes = await ctx.sample(self.config.n)
            scores = await ctx.score(nodes, self.config.scorer)
            best = max(zip(nodes, scores), key=lambda pair: pair[1].value)[0]
            return SearchResult(best.answer, best.id, {"plugin": "shortest"})


    class Brevity(Scorer):
        description = "minus the length of the path"

        async def score(self, problem, candidates):
            return [Score(value=-float(len(c.text))) for c in candidates]
    '''
)

ENTRY_POINTS = textwrap.dedent(
    """
    [branchwise.strategies]
    shortest = bw_demo_plugin:Shortest

    [branchwise.scorers]
    brevity = bw_demo_plugin:Brevity
    """
)

RUN = textwrap.dedent(
    """
    import asyncio, json
    from branchwise import Orchestrator, parse_recipe
    from branchwise.orchestrator.engines.scripted import ScriptedEngine
    from tests.conftest import make_problem, teach

    recipe = parse_recipe({
        "engine": {"kind": "scripted"},
        "strategy": {"name": "shortest", "n": 5},
        "scorers": [{"kind": "brevity"}],
        "sampling": {"max_tokens": 64},
    })
    problems = [make_problem(i) for i in range(3)]
    engine = ScriptedEngine(error_rate=0.3)
    teach(engine, problems)

    async def go():
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            return await orchestrator.run(problems)

    out = []
    for r in asyncio.run(go()):
        scored = [r.graph.score(n.id, "brevity") for n in r.graph.terminals()]
        out.append({
            "error": r.error, "detail": r.detail, "answer": r.answer,
            "scores": [s.value for s in scored if s is not None],
            "lengths": [len(n.text) for n in r.graph.terminals()],
            "picked": len(r.graph.node(r.node_id).text),
        })
    print(json.dumps(out))
    """
)


def install_throwaway_plugin(root: Path) -> Path:
    """Lay out the package as an installer would: the module plus its dist-info."""
    (root / "bw_demo_plugin").mkdir()
    (root / "bw_demo_plugin" / "__init__.py").write_text(PLUGIN)
    info = root / "bw_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bw-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def test_a_plugin_package_registers_a_strategy_and_a_scorer_that_a_recipe_uses(
    tmp_path: Path,
) -> None:
    site = install_throwaway_plugin(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", RUN],
        cwd=REPO,
        env={"PYTHONPATH": f"{site}:{REPO}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 3
    for result in results:
        assert result["error"] is None
        assert result["detail"] == {"plugin": "shortest"}  # the plugin strategy ran
        assert len(result["scores"]) == 5  # the plugin scorer scored every sample
        assert result["scores"] == [-float(n) for n in result["lengths"]]
        assert result["picked"] == min(result["lengths"])


def test_the_cli_lists_plugin_strategies_and_scorers(tmp_path: Path) -> None:
    site = install_throwaway_plugin(tmp_path)
    listed = {}
    for command in ("strategies", "scorers"):
        done = subprocess.run(
            [sys.executable, "-m", "branchwise", command],
            cwd=REPO,
            env={"PYTHONPATH": f"{site}:{REPO}", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        listed[command] = done.stdout
    assert "shortest: keep the sample the scorer likes best" in listed["strategies"]
    assert "best_of_n:" in listed["strategies"]
    assert "brevity [outcome]: minus the length of the path" in listed["scorers"]

"""The import layers: every module imports on its own, and the layer contracts hold.

The tests import ``branchwise`` before anything else (conftest), which would hide a module
that only imports after another has been loaded; so each module is imported in a child
process that has loaded no project module at all.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "orchestrator", "strategies", "verifiers", "rewards")
# The installed package, not the checkout: children run outside the repository, so only the
# import name ``branchwise`` can resolve (as it does for a user).
NEUTRAL_CWD = Path("/")

# One interpreter loads the third-party libraries once, then forks a child per module: the
# child starts with no project module loaded, exactly as a fresh interpreter would, at a
# fraction of the cost of starting one per module.
_WALK = textwrap.dedent(
    """
    import os, sys, importlib, traceback
    import pydantic, networkx, numpy, yaml, httpx  # noqa: F401 - shared by every child
    failed = []
    for name in sys.argv[1:]:
        assert not any(m.split(".")[0] == "branchwise" for m in sys.modules), "parent loaded one"
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            failed.append(name)
    print("FAILED:" + ",".join(failed))
    """
)


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(
                ".".join(("branchwise", *(parts[:-1] if parts[-1] == "__init__" else parts)))
            )
    return names


def walk(modules: list[str]) -> list[str]:
    """The modules that fail to import in a fresh process (each on its own)."""
    done = subprocess.run(
        [sys.executable, "-c", _WALK, *modules],
        cwd=NEUTRAL_CWD,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    failed = [m for m in last.removeprefix("FAILED:").split(",") if m]
    assert not failed, f"{failed} do not import on their own:\n{done.stderr[-4000:]}"
    return failed


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_on_its_own_in_a_fresh_process() -> None:
    modules = project_modules()
    assert (
        len(modules) > 60
        and "branchwise.strategies.base" in modules
        and "branchwise.verifiers.reference" in modules
    )
    walk(modules)


def test_the_import_layer_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_public_api_is_what_the_readme_imports() -> None:
    # In a fresh process: importing the package loads no runner until a name is asked for.
    script = textwrap.dedent(
        """
        import sys
        import branchwise
        loaded = {"branchwise.orchestrator.runner", "branchwise.strategies.base"} & set(sys.modules)
        assert not loaded, loaded
        from branchwise import Orchestrator, Problem, load_recipe, search, search_sync
        from branchwise import *  # noqa: F403
        import branchwise.orchestrator.runner, branchwise.core.problem
        assert Orchestrator is branchwise.orchestrator.runner.Orchestrator
        assert Problem is branchwise.core.problem.Problem
        missing = [n for n in branchwise.__all__ if not hasattr(branchwise, n)]
        assert not missing, missing
        assert branchwise.__version__ != "0+unknown"
        print(len(branchwise.__all__))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=NEUTRAL_CWD,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "36"


def test_the_engine_contract_forbids_every_other_orchestrator_module() -> None:
    # The forbidden list is written out by name; a new orchestrator module must join it.
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    [engines] = [c for c in config["contracts"] if c["type"] == "forbidden"]
    below = set(engines["source_modules"])
    top_level = {
        ".".join(m.split(".")[:3])
        for m in project_modules()
        if m.startswith("branchwise.orchestrator.") and ".".join(m.split(".")[:3]) not in below
    }
    assert top_level <= set(engines["forbidden_modules"])

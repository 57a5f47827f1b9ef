"""The wheel, installed into a fresh virtualenv, is the whole product: one import name.

The wheel is built from the checkout and installed with ``--no-deps`` into a new virtualenv
made from the base interpreter. Its dependencies (vLLM, torch, pydantic, ...) are borrowed
read-only from the test's own environment through a path file, which adds their folder to
``sys.path`` without running that environment's own path files: the editable install of the
checkout stays invisible, so every ``branchwise`` module the child loads comes from the wheel.
Every child runs in an empty folder outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTED = """\
engine: {kind: scripted, error_rate: 0.0}
strategy: {name: self_consistency, n: 4}
sampling: {temperature: 1.0, max_tokens: 64}
seed: 0
"""


@dataclass(frozen=True)
class FreshInstall:
    wheel: Path
    venv: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "branchwise"), *args],
            cwd=self.workdir,
            env={"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", **(env or {})},
            capture_output=True,
            text=True,
            timeout=900,
        )

    def python_code(self, code: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(self.python), "-c", code],
            cwd=self.workdir,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshInstall:
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so the build leaves no build/ or egg-info folders in the checkout.
    source = root / "source"
    shutil.copytree(
        REPO, source, symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "results",
                                      ".pytest_cache", ".mypy_cache", ".ruff_cache", "__pycache__"),
    )  # fmt: skip
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "dist"), str(source)],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (root / "dist").glob("branchwise-*.whl")
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    workdir = root / "work"
    workdir.mkdir()
    return FreshInstall(wheel=wheel, venv=venv, workdir=workdir)


def test_the_wheel_holds_one_import_name_and_the_testbed(fresh: FreshInstall) -> None:
    names = zipfile.ZipFile(fresh.wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"branchwise", f"{fresh.wheel.name.split('-py3')[0]}.dist-info"}
    for bundled in (
        "branchwise/examples/recipes/demo.yaml",
        "branchwise/examples/testbed/data/eval.jsonl",
        "branchwise/examples/testbed/models/policy/model.safetensors",
        "branchwise/examples/testbed/models/policy/tokenizer.json",
        "branchwise/examples/testbed/models/prm/model.safetensors",
        "branchwise/orchestrator/templates/report.html.j2",
        "branchwise/py.typed",
    ):
        assert bundled in names, bundled
    size = sum(info.file_size for info in zipfile.ZipFile(fresh.wheel).infolist())
    assert size < 15_000_000, size


def test_the_installed_package_answers_version_and_imports_nothing_else(
    fresh: FreshInstall,
) -> None:
    done = fresh.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "branchwise 0.1.0"
    found = json.loads(
        fresh.python_code(
            "import importlib.util, json, branchwise, branchwise.orchestrator.runner\n"
            "print(json.dumps({'file': branchwise.__file__, 'version': branchwise.__version__,"
            " 'others': [n for n in ('core', 'orchestrator', 'strategies', 'verifiers',"
            " 'rewards') if importlib.util.find_spec(n) is not None]}))"
        )
    )
    assert Path(found["file"]).is_relative_to(fresh.venv), found
    assert found["version"] == "0.1.0" and found["others"] == []


def test_a_scripted_recipe_runs_from_the_wheel_beside_a_stand_in_verifiers(
    fresh: FreshInstall, tmp_path: Path
) -> None:
    # A user's own top-level `verifiers` (e.g. the RL-environments package) on the path.
    shadow = tmp_path / "shadow" / "verifiers"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("STAND_IN = True\nraise_if_used = None\n")
    (shadow / "reference.py").write_text("raise ImportError('the stand-in was imported')\n")
    env = {"PYTHONPATH": str(shadow.parent)}
    recipe = tmp_path / "scripted.yaml"
    recipe.write_text(SCRIPTED)
    out = tmp_path / "out"
    done = fresh.run("eval", str(recipe), "--question", "Start with 3. Add 4.", "--quiet",
                     "--out", str(out), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    where = json.loads(
        fresh.python_code(
            "import json, verifiers, branchwise.verifiers.reference as ours\n"
            "from branchwise.core.scorers import SCORERS\n"
            "SCORERS.get('reference_answer')\n"
            "print(json.dumps({'theirs': verifiers.STAND_IN, 'ours': ours.__file__}))",
            env=env,
        )
    )
    assert where["theirs"] is True
    assert Path(where["ours"]).is_relative_to(fresh.venv)


@pytest.mark.vllm
def test_branchwise_demo_runs_the_bundled_testbed_after_install(fresh: FreshInstall) -> None:
    env = {
        "HOME": str(fresh.workdir),
        **{k: v for k, v in os.environ.items() if k.startswith("VLLM")},
    }
    done = fresh.run("demo", "--limit", "3", "--out", str(fresh.workdir / "demo"), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy" in done.stdout.lower() or "accuracy" in done.stderr.lower(), done.stdout
    assert len(list((fresh.workdir / "demo").iterdir())) > 0

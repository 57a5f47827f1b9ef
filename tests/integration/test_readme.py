"""The README's commands and API snippet on the bundled testbed (in-process vLLM), the engine
they name. Each `eval` gets `--limit 4` appended (argparse keeps the last value) so the tier
stays minutes long; the flags, paths and files they write are the README's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from branchwise.orchestrator.cli import main
from tests.readme import REPO, blocks, branchwise_argv, shell_commands

pytestmark = pytest.mark.vllm


@pytest.fixture
def in_repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return tmp_path


def test_readme_commands_run_on_the_testbed(
    in_repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for block in blocks("bash"):
        for command in shell_commands(block):
            argv = branchwise_argv(command)
            if argv is None or argv[0] == "serve" or "recipes/real/" in command:
                continue  # serve: tests/integration/test_server.py; real/: needs a GPU
            if argv[0] in {"eval", "run", "demo"}:
                argv = [*argv, "--limit", "4"]
            try:
                code = main(argv)
            except SystemExit as exit:
                code = int(exit.code or 0)
            out, err = capsys.readouterr()
            assert code == 0, f"{command}\n{out[-2000:]}\n{err[-2000:]}"
    assert (in_repo_copy / "results/report.html").is_file()
    assert (in_repo_copy / "trace-eval-3.html").is_file()


def test_readme_python_api_snippet_runs_on_the_testbed(in_repo_copy: Path) -> None:
    for block in blocks("python"):
        if "127.0.0.1:8000" in block.text:
            continue  # the server's clients: tests/unit/test_readme.py
        script = in_repo_copy / f"snippet_{block.line}.py"
        script.write_text(block.text)
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr[-3000:]}"
        # the engine's own start-up lines (about 90 of them) went to a file, not stderr
        noise = [line for line in done.stderr.splitlines() if "vllm" in line.lower()]
        assert len(noise) < 5, done.stderr[-3000:]

"""Every command and snippet in README.md runs here, so none can rot.

The README's commands name the bundled testbed recipe (`examples/recipes/demo.yaml`, in-process
vLLM). This tier runs them, as written, in a sandbox whose `examples/recipes/demo.yaml` is the
same recipe on the scripted engine (the testbed's own solutions, replayed with errors), so every
subcommand, flag, path and snippet is exercised in seconds; `tests/integration/test_readme.py`
runs the same list on the testbed itself. A README line no test knows how to run fails
`test_every_readme_shell_line_is_run_or_says_why_not`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from branchwise.orchestrator.cli import main
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.server.main import bind
from tests.readme import (
    REPO,
    Block,
    blocks,
    branchwise_argv,
    not_run_reason,
    shell_commands,
)

DEMO = "examples/recipes/demo.yaml"
SOLUTIONS = REPO / "examples/testbed/data/eval.jsonl"


def scripted_twin() -> str:
    """The demo recipe with the scripted engine in place of vLLM (all else the same)."""
    data = yaml.safe_load((REPO / DEMO).read_text())
    data["engine"] = {"kind": "scripted", "error_rate": 0.2, "solutions": str(SOLUTIONS)}
    data["sampling"]["max_tokens"] = 200  # one token per character on the scripted engine
    data["dataset"]["path"] = str(SOLUTIONS)
    return yaml.safe_dump(data)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where the README's relative paths hold, with the scripted demo recipe."""
    examples = tmp_path / "examples"
    (examples / "recipes").mkdir(parents=True)
    for part in ("datasets", "testbed", "lookalikes"):
        (examples / part).symlink_to(REPO / "examples" / part)
    (examples / "recipes/real").symlink_to(REPO / "examples/recipes/real")
    (tmp_path / DEMO).write_text(scripted_twin())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return tmp_path


def cli_lines() -> list[str]:
    return [c for b in blocks("bash") for c in shell_commands(b)]


def _is_gpu_only(argv: list[str]) -> bool:
    return any("recipes/real/" in a for a in argv) and argv[0] in {"eval", "run"}


def test_every_readme_shell_line_is_run_or_says_why_not() -> None:
    unknown = []
    for command in cli_lines():
        argv = branchwise_argv(command)
        known = (
            argv is not None
            or not_run_reason(command) is not None
            or re.match(r"^(B=|export \w+=|curl )", command)
        )
        if not known:
            unknown.append(command)
    assert not unknown, f"README lines no test runs: {unknown}"


def test_every_readme_branchwise_command_runs_as_written(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = []
    for command in cli_lines():
        argv = branchwise_argv(command)
        if argv is None or argv[0] in {"serve", "demo"}:  # serve: below; demo: the vLLM tier
            continue
        if _is_gpu_only(argv):
            # the GPU line: its recipe validates and its dataset flags parse; the run needs weights
            recipe = next(a for a in argv if a.endswith(".yaml"))
            assert main(["validate", recipe, "--static"]) == 0, command
            continue
        try:
            code = main(argv)
        except SystemExit as exit:  # --version
            code = int(exit.code or 0)
        out, err = capsys.readouterr()
        assert code == 0, f"{command}\n{out}\n{err}"
        assert "Traceback" not in err, command
        ran.append(argv[0])
    assert {"eval", "summary", "compare", "report", "trace", "validate"} <= set(ran)
    assert (sandbox / "results/report.html").is_file()
    assert (sandbox / "results/report.md").is_file()
    assert (sandbox / "trace-eval-3.html").is_file()
    assert sorted(p.name for p in (sandbox / "results/sweep").iterdir()) == [
        "budget-1024",
        "budget-256",
        "budget-512",
    ]


def test_the_readme_recipe_and_fragments_parse() -> None:
    yamls = blocks("yaml")
    base = yaml.safe_load(yamls[0].text)
    recipes = REPO / "examples/recipes"
    assert main(["validate", "--static", str(_write(recipes, yamls[0]))]) == 0
    for block in yamls[1:]:
        fragment = yaml.safe_load(block.text)
        data = {**base, **fragment}
        if "scorers" in fragment:  # more scorers beside the one the strategy names
            data["scorers"] = base["scorers"] + fragment["scorers"]
        parse_recipe(data, source=f"README.md:{block.line}", base_dir=recipes)
    for block in blocks("toml"):
        groups = tomllib.loads(block.text)["project"]["entry-points"]
        assert set(groups) == {"branchwise.strategies", "branchwise.scorers"}


def _write(folder: Path, block: Block) -> Path:
    """The block as a file in ``folder`` (its relative paths start there), removed after."""
    path = folder / f".readme-{block.line}-{os.getpid()}.yaml"
    path.write_text(block.text)
    _CLEANUP.append(path)
    return path


_CLEANUP: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_written() -> Iterator[None]:
    yield
    while _CLEANUP:
        _CLEANUP.pop().unlink(missing_ok=True)


def _api_snippets() -> list[Block]:
    # "Write a strategy" is a module, not a script: test_readme_strategy.py runs it
    return [
        b
        for b in blocks("python")
        if "127.0.0.1:8000" not in b.text and "STRATEGIES.register(" not in b.text
    ]


def _client_snippets() -> list[Block]:
    return [b for b in blocks("python") if "127.0.0.1:8000" in b.text]


def test_the_readme_python_snippets_run(sandbox: Path) -> None:
    snippets = _api_snippets()
    assert snippets
    for block in snippets:
        script = sandbox / f"snippet_{block.line}.py"
        script.write_text(block.text)
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), f"README.md:{block.line} printed nothing"


def test_the_readme_server_commands_and_clients_run(sandbox: Path) -> None:
    lines = cli_lines()
    (serve,) = [c for c in lines if (branchwise_argv(c) or [""])[0] == "serve"]
    env = dict(os.environ)
    for line in lines:
        if match := re.match(r"^export (\w+)=(.*)$", line):
            env[match.group(1)] = match.group(2)
    sock = bind("127.0.0.1", 0)
    port = str(sock.getsockname()[1])
    sock.close()
    argv = branchwise_argv(serve)
    assert argv is not None
    command = [sys.executable, "-m", "branchwise", *[port if a == "8000" else a for a in argv]]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        for curl in [c for c in lines if c.startswith("curl ")]:
            done = subprocess.run(
                ["bash", "-c", curl.replace(":8000", f":{port}") + " --fail-with-body -sS"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert '"branchwise"' in done.stdout
        for block in _client_snippets():
            done = subprocess.run(
                [sys.executable, "-c", block.text.replace(":8000", f":{port}")],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"README.md:{block.line}\n{done.stderr[-3000:]}"
            assert done.stdout.strip()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_validate_takes_several_recipes_and_names_each_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = sorted(str(p) for p in (REPO / "examples/recipes/real").glob("*.yaml"))
    assert len(real) >= 3
    assert main(["validate", *real, "--static"]) == 0
    assert capsys.readouterr().out.count(": ok ") == len(real)
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: {name: best_of_m}\n")
    assert main(["validate", real[0], str(bad), real[1], "--static"]) == 2
    out, err = capsys.readouterr()
    assert out.count(": ok ") == 2  # the bad one does not hide the next
    assert len(err.strip().splitlines()) == 1 and str(bad) in err


def test_every_option_of_every_command_shows_its_default_in_help() -> None:
    import argparse

    from branchwise.orchestrator.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command in sub.choices.items():
        formatter = command._get_formatter()
        for action in command._actions:
            if not action.option_strings or action.nargs == 0 or action.required:
                continue  # positionals, flags, --help, and options one must give
            shown = formatter._get_help_string(action) or ""  # type: ignore[attr-defined]
            if "default" not in shown:
                missing.append(f"{name} {action.option_strings[0]}")
            assert "None" not in shown, (name, shown)
    assert not missing, f"options whose --help gives no default: {missing}"


def test_the_table_of_contents_lists_every_section_and_every_link_lands() -> None:
    text = (REPO / "README.md").read_text()
    headings, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"^(##|###) (.+)$", line)):
            headings.append(match.group(2))

    def anchor(title: str) -> str:
        return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")

    contents = text[text.index("**Contents**") : text.index("## ")]
    listed = re.findall(r"- \[(.+?)\]\(#(.+?)\)", contents)
    assert [title for title, _ in listed] == headings
    assert all(anchor(title) == link for title, link in listed)
    first_screen = text[: text.index("**Contents**")]
    assert "the bundled model is a toy, chosen to make search measurable on a cpu" in (
        first_screen.lower()
    )

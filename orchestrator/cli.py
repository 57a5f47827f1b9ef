"""The ``branchwise`` command: evaluate recipes, summarise, compare, report and trace runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import yaml

from branchwise.core.errors import BranchwiseError, StoreFault
from branchwise.core.problem import Problem
from branchwise.orchestrator import cli_runs
from branchwise.orchestrator.datasets import (
    DatasetFormat,
    DatasetSpec,
    field_map,
    load_problems,
    unencodable,
)
from branchwise.orchestrator.evaluate import Console, EvalOutcome, engine_output_to, evaluate
from branchwise.orchestrator.exit_codes import (
    EXIT_ALL_FAILED,
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS_FAILED,
    EXIT_STORE_FAULT,
)
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.metrics import run_metrics
from branchwise.orchestrator.recipe import Recipe, load_recipe
from branchwise.orchestrator.report import summary_text
from branchwise.orchestrator.store import DatasetIdentity, ResultStore
from branchwise.orchestrator.validation import check_resources


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit as a traceback
    except BrokenPipeError:
        # the reader went away (`| head`): end quietly, as a command killed by SIGPIPE would
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except StoreFault as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE_FAULT
    except BranchwiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished problems are saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _budgets(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="branchwise",
        description=__doc__,
        epilog=_EXIT_CODES,
        formatter_class=HelpWithDefaults,
    )
    parser.add_argument("--version", action="version", version=f"branchwise {_version()}")
    sub = parser.add_subparsers(required=True, metavar="command")

    for name, help_text in (
        ("eval", "run a recipe over a dataset into a results folder (resumes)"),
        ("run", "the same as eval"),
    ):
        run = sub.add_parser(
            name,
            help=help_text,
            epilog=_EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _eval_arguments(run)
        run.set_defaults(handler=_eval)

    demo = sub.add_parser(
        "demo",
        help="run the bundled demo recipe (self-consistency on the testbed policy; it ships "
        "with the package)",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _eval_arguments(demo, with_recipe=False)
    demo.set_defaults(handler=_demo)

    summary = sub.add_parser("summary", help="metrics of a results folder (runs nothing)")
    summary.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    summary.add_argument("--json", action="store_true", help="print the metrics as JSON")
    summary.set_defaults(handler=cli_runs.summary)

    compare = sub.add_parser(
        "compare",
        help="paired test (McNemar, bootstrap interval) of two results folders or two sweeps, "
        "budget by budget",
    )
    compare.add_argument("a", type=Path, metavar="DIR_A")
    compare.add_argument("b", type=Path, metavar="DIR_B")
    compare.add_argument("--json", action="store_true", help="print the comparisons as JSON")
    compare.set_defaults(handler=cli_runs.compare)

    report = sub.add_parser("report", help="a self-contained HTML (and markdown) report")
    report.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file")
    report.add_argument("--worst", type=_positive, default=10, help="worst problems listed")
    report.set_defaults(handler=cli_runs.report)

    trace = sub.add_parser("trace", help="view or export one problem's search graph")
    trace.add_argument("dir", type=Path, metavar="DIR")
    trace.add_argument("--problem", required=True, help="problem id")
    trace.add_argument("--out", type=Path, help="output file (default trace-ID.EXT)")
    trace.add_argument(
        "--format",
        choices=("html", "json", "graphml", "dot"),
        default="html",
        help="html: an interactive page; json, graphml, dot: the graph for other tools",
    )
    trace.set_defaults(handler=cli_runs.trace)

    export = sub.add_parser(
        "export", help="a stored run as one row per sample (JSONL or Parquet), for other tools"
    )
    export.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    export.add_argument(
        "--format", choices=("jsonl", "parquet"), default="jsonl", help="file format"
    )
    export.add_argument("--out", type=Path, help="output file (default samples.FORMAT)")
    export.set_defaults(handler=_export)

    validate = sub.add_parser("validate", help="check recipes without running them")
    validate.add_argument("recipes", type=Path, nargs="+", metavar="RECIPE")
    validate.add_argument(
        "--static",
        action="store_true",
        help="check the recipe alone: no model folders, tokenizers or datasets looked at "
        "(for recipes of checkpoints that are not on this machine)",
    )
    validate.set_defaults(handler=_validate)

    allocate = sub.add_parser(
        "allocate",
        help="fit an osca recipe's allocation on its dataset (use a val split) and write it "
        "as the recipe's strategy section",
    )
    allocate.add_argument("recipe", type=Path)
    allocate.add_argument("--out", type=Path, required=True, help="the YAML fragment to write")
    allocate.add_argument("--samples", type=_positive, default=16, help="per configuration")
    allocate.add_argument("--budget", type=_positive, default=8, help="samples to split")
    allocate.add_argument("--objective", choices=("vote", "coverage"), default="vote")
    allocate.add_argument(
        "--limit", type=_positive, help="the first N problems (default: dataset.limit, else all)"
    )
    allocate.set_defaults(handler=_allocate)

    strategies = sub.add_parser("strategies", help="list registered strategies")
    strategies.set_defaults(handler=_list_strategies)

    scorers = sub.add_parser("scorers", help="list registered verifiers and reward models")
    scorers.set_defaults(handler=_list_scorers)

    serve = sub.add_parser(
        "serve",
        help="serve recipes behind an OpenAI-compatible API (each recipe a model named by its "
        "file's stem)",
    )
    serve.add_argument("recipes", type=Path, nargs="+", metavar="RECIPE")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require `Authorization: Bearer <key>` with the key held in this variable "
        "(default: none, no key asked)",
    )
    _limit_flags(serve)
    serve.set_defaults(handler=_serve)
    for command in sub.choices.values():
        command.formatter_class = HelpWithDefaults
    return parser


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per server limit, with its default and description from ServerLimits."""
    from branchwise.orchestrator.server.settings import ServerLimits

    for name, info in ServerLimits.model_fields.items():
        kind = info.annotation if info.annotation in (int, float) else str
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,  # type: ignore[arg-type]
            default=info.default,
            help=f"{info.description} (default {info.default})",
        )


_EXIT_CODES = """exit codes:
  0    every problem finished (right or wrong)
  1    some problems failed (errors; they rerun on resume)
  2    bad input: recipe, dataset, results folder or arguments
  3    every problem failed
  4    storing a result failed (disk full, I/O or database error); finished problems are
       kept and a rerun resumes
  130  interrupted (finished problems are saved)
  141  the output was closed early (e.g. `| head`); nothing more is printed"""


def _eval_arguments(run: argparse.ArgumentParser, *, with_recipe: bool = True) -> None:
    if with_recipe:
        run.add_argument("recipe", type=Path)
    run.add_argument(
        "--question",
        action="append",
        help="solve this question (repeatable; default: the dataset's problems)",
    )
    run.add_argument(
        "--limit",
        type=_positive,
        help="only the first N dataset problems (default: the recipe's dataset.limit, else all)",
    )
    run.add_argument("--dataset", type=Path, help="JSONL problems (default: the recipe's dataset)")
    run.add_argument(
        "--format",
        choices=get_args(DatasetFormat),
        help="--dataset's format (default: the recipe's, else branchwise)",
    )
    run.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="PART=KEY",
        help="which JSONL key holds a part (id, question, answer, solution), e.g. "
        "question=Problem; repeatable (default: the format's keys)",
    )
    run.add_argument(
        "--out",
        type=Path,
        help="results folder (a results store); a rerun resumes from it (default: none, "
        "nothing is stored)",
    )
    run.add_argument("--traces", action="store_true", help="store each search graph in --out")
    run.add_argument(
        "--concurrency",
        type=_positive,
        help="problems searched at once (default: the recipe's concurrency)",
    )
    run.add_argument("--seed", type=int, help="the run seed (default: the recipe's seed)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. strategy.n=8 or sampling.temperature=0.7 "
        "(VALUE is read as YAML); repeatable (default: none)",
    )
    run.add_argument(
        "--budgets",
        type=_budgets,
        metavar="N,N,...",
        help="a sweep over budget.max_generated_tokens: one results folder per budget, "
        "OUT/budget-N, on one engine (default: none, one run at the recipe's budget)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    run.add_argument("--lines", action="store_true", help="print one line per finished problem")
    run.add_argument(
        "--verbose", action="store_true", help="let the engine's own logs through to the terminal"
    )
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: spread the problems over Ray workers sharing --out",
    )
    run.add_argument(
        "--workers", type=_positive, default=2, help="--executor ray: Ray workers (default 2)"
    )
    run.add_argument(
        "--worker-gpus",
        type=float,
        default=0.0,
        help="--executor ray: GPUs Ray gives each worker (1 for an in-process vLLM per GPU)",
    )
    run.add_argument(
        "--ray-address",
        help="--executor ray: the cluster to join (default $RAY_ADDRESS, else a local cluster "
        "for this run)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("branchwise")
    except PackageNotFoundError:
        return "unknown"


def _problems(recipe: Recipe, args: argparse.Namespace) -> tuple[list[Problem], DatasetIdentity]:
    if args.question:
        # ids from the text, so a rerun with other questions never "resumes" old answers
        questions = list(dict.fromkeys(args.question))
        for question in questions:
            if unencodable(question) is not None:
                raise BranchwiseError(
                    f"--question {question!r}: not UTF-8 text (check the terminal's encoding)"
                )
        problems = [Problem(id=question_id(q), question=q) for q in questions]
        return problems, DatasetIdentity.of_questions(questions)
    overrides = _field_overrides(args.field)
    if args.dataset is not None:
        spec = DatasetSpec(
            path=str(args.dataset.resolve()),
            format=args.format or (recipe.dataset.format if recipe.dataset else "branchwise"),
            fields={**(recipe.dataset.fields if recipe.dataset else {}), **overrides},
        )
    elif recipe.dataset is not None:
        spec = recipe.dataset.model_copy(
            update={
                "format": args.format or recipe.dataset.format,
                "fields": {**recipe.dataset.fields, **overrides},
            }
        )
    else:
        raise BranchwiseError("the recipe has no `dataset`; pass --dataset or --question")
    path = recipe.resolve(spec.path)
    problems = load_problems(
        path,
        format=spec.format,
        fields=field_map(spec.format, spec.fields),
        limit=args.limit or spec.limit,
    )
    return problems, DatasetIdentity.of_file(path)


def _field_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        part, sep, key = pair.partition("=")
        if not sep or not part or not key:
            raise BranchwiseError(f"--field {pair!r}: expected PART=KEY, e.g. question=Problem")
        overrides[part.strip()] = key.strip()
    return overrides


def _recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--set, --seed and --concurrency as a nested mapping merged over the recipe's YAML."""
    merged: dict[str, Any] = {}
    for pair in args.overrides:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise BranchwiseError(f"--set {pair!r}: expected KEY=VALUE, e.g. strategy.n=8")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise BranchwiseError(f"--set {pair!r}: VALUE is not valid YAML") from None
        target = merged
        *parents, leaf = key.strip().split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise BranchwiseError(f"--set {pair!r}: {part} is set twice")
        target[leaf] = value
    if args.seed is not None:
        merged["seed"] = args.seed
    if args.concurrency is not None:
        merged["concurrency"] = args.concurrency
    return merged


def question_id(question: str) -> str:
    """A stable id for a free-text question."""
    return "q-" + hashlib.blake2b(question.encode(), digest_size=6).hexdigest()


def _demo(args: argparse.Namespace) -> int:
    from branchwise.orchestrator.bundled import demo_recipe

    args.recipe = demo_recipe()
    if not (args.quiet or args.lines):
        args.lines = True
    return _eval(args)


def _eval(args: argparse.Namespace) -> int:
    overrides = _recipe_overrides(args)
    recipe = load_recipe(args.recipe, overrides or None)
    problems, dataset = _problems(recipe, args)
    if args.executor == "ray":
        return _eval_on_ray(recipe, overrides, problems, dataset, args)
    runs: list[tuple[Recipe, Path | None]] = [(recipe, args.out)]
    if args.budgets:
        if args.out is None:
            raise BranchwiseError("--budgets needs --out (one results folder per budget)")
        if args.out.exists() and not args.out.is_dir():
            raise BranchwiseError(f"{args.out}: is a file; --out names a folder")
        _check_sweep_folder(args.out)
        runs = []
        for budget in args.budgets:
            extra = {
                **overrides,
                "budget": {**overrides.get("budget", {}), "max_generated_tokens": budget},
            }
            runs.append((load_recipe(args.recipe, extra), args.out / f"budget-{budget}"))
    with contextlib.ExitStack() as stack:
        stores = []
        for run_recipe, folder in runs:
            if folder is None:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            stores.append((run_recipe, stack.enter_context(ResultStore(folder, create=True))))
        log_path = _engine_log(recipe, args, stores[0][1].folder)
        console_cm = engine_output_to(log_path)
        console = stack.enter_context(console_cm)
        if log_path is not None and not args.quiet:
            print(f"engine log: {log_path}", file=console.err)
        outcomes = asyncio.run(_eval_all(stores, problems, dataset, console, args))
        stack.close()  # restore the terminal before the summary
    code = EXIT_OK
    for _, outcome in outcomes:
        metrics = run_metrics(outcome.records)
        title = f"{outcome.folder}:" if args.budgets else ""
        print(summary_text(metrics, title=title))
        if metrics.failed and metrics.failed == metrics.problems:
            code = max(code, EXIT_ALL_FAILED)
        elif metrics.failed:
            code = max(code, EXIT_PROBLEMS_FAILED)
        for key, count in outcome.diagnosis.said.items():
            if not key.startswith("error:"):
                print(f"warning, in {count} problems: {outcome.diagnosis.first[key]}")
        if outcome.elsewhere:
            print(
                f"note: {outcome.elsewhere} problems are still running in another writer of "
                f"{outcome.folder}; this summary holds those stored so far (run `branchwise "
                f"summary {outcome.folder}` when it ends)"
            )
    return code


def _check_sweep_folder(folder: Path) -> None:
    """A --budgets folder holds only its budget-N results folders (a rerun resumes them)."""
    if not folder.is_dir():
        return
    others = sorted(
        p.name for p in folder.iterdir() if not (re.fullmatch(r"budget-\d+", p.name) and p.is_dir())
    )
    if others:
        raise BranchwiseError(
            f"{folder}: not a budget sweep folder (holds {', '.join(others[:3])}); give "
            "--out --budgets a new or empty folder (nothing written)"
        )


def _eval_on_ray(
    recipe: Recipe,
    overrides: dict[str, Any],
    problems: list[Problem],
    dataset: DatasetIdentity,
    args: argparse.Namespace,
) -> int:
    """The evaluation on Ray workers sharing the results folder (see ray_executor)."""
    from branchwise.orchestrator.ray_executor import run_on_ray

    if args.out is None:
        raise BranchwiseError("--executor ray needs --out (the results folder the workers share)")
    if args.budgets:
        raise BranchwiseError("--executor ray runs one budget; run the sweep one budget at a time")
    if recipe.budget.run_generated_tokens is not None:
        raise BranchwiseError(
            "--executor ray: budget.run_generated_tokens is split by one process that probes "
            "every problem first; Ray workers would each spend it (run without --executor ray)"
        )
    with ResultStore(args.out, create=True) as store:
        store.begin_run(
            recipe=recipe.model_dump(mode="json"),
            fingerprint=recipe.fingerprint(),
            dataset=dataset,
        )
    run_on_ray(
        args.recipe,
        overrides,
        problems,
        dataset,
        args.out,
        workers=args.workers,
        gpus_per_worker=args.worker_gpus,
        address=args.ray_address,
        with_graph=args.traces,
    )
    wanted = {p.id for p in problems}
    with ResultStore(args.out) as store:
        records = [r for r in store.records() if r["problem_id"] in wanted]
    metrics = run_metrics(records)
    print(summary_text(metrics))
    if metrics.failed:
        return EXIT_ALL_FAILED if metrics.failed == metrics.problems else EXIT_PROBLEMS_FAILED
    return EXIT_OK


def _engine_log(recipe: Recipe, args: argparse.Namespace, folder: Path) -> Path | None:
    """Where the engine's own output goes; None: to the terminal (--verbose, no vLLM)."""
    uses_vllm = recipe.engine.kind == "vllm" or any(
        getattr(s, "backend", None) == "vllm" for s in recipe.scorers
    )
    if args.verbose or not uses_vllm:
        return None
    if args.out is not None:
        return Path(args.out) / "engine.log"
    return Path(tempfile.gettempdir()) / f"branchwise-engine-{os.getpid()}.log"


async def _eval_all(
    stores: list[tuple[Recipe, ResultStore]],
    problems: list[Problem],
    dataset: DatasetIdentity,
    console: Console,
    args: argparse.Namespace,
) -> list[tuple[Recipe, EvalOutcome]]:
    """Each store in turn; a budget sweep shares one engine (the recipes differ in budget)."""
    outcomes = []
    first = stores[0][0]
    engine = first.engine.build(first.base_dir) if len(stores) > 1 else None
    async with contextlib.AsyncExitStack() as stack:
        if engine is not None:
            await stack.enter_async_context(engine)
        for run_recipe, store in stores:
            outcome = await evaluate(
                run_recipe,
                problems,
                store,
                dataset,
                console,
                engine=engine,
                with_graph=args.traces,
                quiet=args.quiet,
                lines=args.lines,
            )
            outcomes.append((run_recipe, outcome))
    return outcomes


def _export(args: argparse.Namespace) -> int:
    from branchwise.orchestrator.export import export_command

    return export_command(args.dirs, args.out, args.format)


def _allocate(args: argparse.Namespace) -> int:
    from branchwise.orchestrator.osca_fit import allocate_command

    return allocate_command(
        args.recipe, args.out, samples=args.samples, budget=args.budget,
        objective=args.objective, limit=args.limit,
    )  # fmt: skip


def _validate(args: argparse.Namespace) -> int:
    """Check every recipe (a bad one does not hide the next); exit 2 if any is bad."""
    bad = 0
    for path in args.recipes:
        try:
            recipe = load_recipe(path)
            notes = [] if args.static else check_resources(recipe)
        except BranchwiseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
            continue
        summary = {
            "engine": recipe.engine.kind,
            "strategy": recipe.strategy.name,
            "scorers": [s.alias for s in recipe.scorers],
            "checked": "recipe only (--static)" if args.static else "recipe, files and datasets",
        }
        print(f"{path}: ok {json.dumps(summary)}")
        for note in notes:
            print(f"  note: {note}")
    return EXIT_BAD_INPUT if bad else EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        from branchwise.orchestrator.server.main import serve
        from branchwise.orchestrator.server.settings import ServerLimits
    except ImportError as exc:  # fastapi or uvicorn missing
        raise BranchwiseError(
            f"the server needs the `server` extra ({exc.name} is not installed): "
            "pip install 'branchwise[server]'"
        ) from None
    from pydantic import ValidationError

    values = {name: getattr(args, name) for name in ServerLimits.model_fields}
    try:
        limits = ServerLimits(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = "--" + str(error["loc"][0]).replace("_", "-")
        raise BranchwiseError(f"{flag}: {error['msg']} (got {error['input']!r})") from None
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            raise BranchwiseError(f"--api-key-env {args.api_key_env}: the variable is not set")
    if not 0 <= args.port <= 65535:
        raise BranchwiseError(f"--port: expected 0 to 65535, got {args.port}")
    # uvicorn shuts down on SIGINT and usually re-raises it once done; whether the interrupt
    # surfaces here or the coroutine simply returns, the server has stopped.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(args.recipes, host=args.host, port=args.port, api_key=api_key, limits=limits)
        )
    print("server stopped", file=sys.stderr)
    return 0


def _list_strategies(args: argparse.Namespace) -> int:
    from branchwise.strategies.base import STRATEGIES

    for name, cls in STRATEGIES:
        print(f"{name}: {cls.description}")
        _print_fields(cls.config_model, skip={"name"})
    return 0


def _list_scorers(args: argparse.Namespace) -> int:
    from branchwise.core.scorers import SCORERS

    for name, cls in SCORERS:
        level = "step" if cls.step_level else "outcome"
        print(f"{name} [{level}]: {cls.description}")
        _print_fields(cls.config_model, skip={"kind", "name"})
    return 0


def _print_fields(model: type, skip: set[str]) -> None:
    fields = getattr(model, "model_fields", {})
    for field_name, info in fields.items():
        if field_name in skip:
            continue
        default = "required" if info.is_required() else f"default {info.default!r}"
        print(f"    {field_name} ({default}): {info.description or ''}")


if __name__ == "__main__":
    raise SystemExit(main())

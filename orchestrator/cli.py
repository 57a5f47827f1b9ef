"""The ``branchwise`` command: run, validate, and list strategies and scorers."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from core.errors import BranchwiseError
from core.problem import Problem
from orchestrator.datasets import DatasetFormat, DatasetSpec, field_map, load_problems
from orchestrator.recipe import Recipe, load_recipe
from orchestrator.report import summarise
from orchestrator.results import ProblemResult, ResultStore
from orchestrator.runner import Orchestrator
from orchestrator.validation import check_resources


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except BranchwiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished problems are saved", file=sys.stderr)
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="branchwise", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")

    run = sub.add_parser("run", help="run a recipe over its dataset (or --question)")
    run.add_argument("recipe", type=Path)
    run.add_argument("--question", action="append", help="solve this question (repeatable)")
    run.add_argument("--limit", type=int, help="only the first N dataset problems")
    run.add_argument("--dataset", type=Path, help="JSONL problems instead of the recipe's")
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
        "question=Problem; repeatable",
    )
    run.add_argument("--out", type=Path, help="JSONL results; a rerun resumes from it")
    run.add_argument("--traces", action="store_true", help="store each search graph in --out")
    run.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="resume --out even though it holds results of a different recipe",
    )
    run.add_argument("--quiet", action="store_true", help="only the summary")
    run.set_defaults(handler=_run)

    validate = sub.add_parser("validate", help="check a recipe without running it")
    validate.add_argument("recipe", type=Path)
    validate.add_argument(
        "--static",
        action="store_true",
        help="check the recipe alone: no model folders, tokenizers or datasets looked at "
        "(for recipes of checkpoints that are not on this machine)",
    )
    validate.set_defaults(handler=_validate)

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
        help="require `Authorization: Bearer <key>` with the key held in this variable",
    )
    _limit_flags(serve)
    serve.set_defaults(handler=_serve)
    return parser


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per server limit, with its default and description from ServerLimits."""
    from orchestrator.server.settings import ServerLimits

    for name, info in ServerLimits.model_fields.items():
        kind = info.annotation if info.annotation in (int, float) else str
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,  # type: ignore[arg-type]
            default=info.default,
            help=f"{info.description} (default {info.default})",
        )


def _problems(recipe: Recipe, args: argparse.Namespace) -> list[Problem]:
    if args.question:
        # ids from the text, so a rerun with other questions never "resumes" old answers
        return [Problem(id=question_id(q), question=q) for q in dict.fromkeys(args.question)]
    if args.limit is not None and args.limit < 1:
        raise BranchwiseError(f"--limit must be at least 1, got {args.limit}")
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
    return load_problems(
        recipe.resolve(spec.path),
        format=spec.format,
        fields=field_map(spec.format, spec.fields),
        limit=args.limit or spec.limit,
    )


def _field_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        part, sep, key = pair.partition("=")
        if not sep or not part or not key:
            raise BranchwiseError(f"--field {pair!r}: expected PART=KEY, e.g. question=Problem")
        overrides[part.strip()] = key.strip()
    return overrides


def question_id(question: str) -> str:
    """A stable id for a free-text question."""
    return "q-" + hashlib.blake2b(question.encode(), digest_size=6).hexdigest()


def _run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    problems = _problems(recipe, args)
    store = None
    if args.out:
        store = ResultStore(
            args.out,
            with_traces=args.traces,
            recipe=recipe.fingerprint(),
            allow_recipe_change=args.allow_recipe_change,
        )
    finished = {}
    if store is not None:
        finished = {p.id: store.lending(p.id) for p in problems if store.done(p.id)}
        if finished:
            print(f"resuming: {len(finished)} problems already in {args.out}")
    results = asyncio.run(_run_async(recipe, problems, finished, store, quiet=args.quiet))
    if store is not None:
        records = [store.records[p.id] for p in problems if p.id in store.records]
    else:
        records = [r.to_record() for r in results]
    print(summarise(records))
    return 0


async def _run_async(
    recipe: Recipe,
    problems: list[Problem],
    finished: dict[str, dict[str, int]],
    store: ResultStore | None,
    *,
    quiet: bool,
) -> list[ProblemResult]:
    """Run the problems not in ``finished``; finished ones keep their lending-pool seats."""
    results: list[ProblemResult] = []
    if len(finished) == len(problems):
        return results  # nothing left: do not even start the engine
    async with Orchestrator(recipe) as orchestrator:
        async for result in orchestrator.stream(problems, finished=finished):
            if store is not None:
                store.append(result)
            results.append(result)
            if not quiet:
                print(_line(result), flush=True)
    return results


def _line(result: ProblemResult) -> str:
    if result.error:
        return f"{result.problem_id}: FAILED {result.error}"
    mark = {True: "correct", False: "wrong", None: ""}[result.correct]
    ref = f" (reference {result.reference}, {mark})" if result.reference is not None else ""
    tokens = result.usage.get("generated_tokens", 0)
    return f"{result.problem_id}: answer={result.answer}{ref} generated_tokens={tokens}"


def _validate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    notes = [] if args.static else check_resources(recipe)
    summary = {
        "engine": recipe.engine.kind,
        "strategy": recipe.strategy.name,
        "scorers": [s.alias for s in recipe.scorers],
        "checked": "recipe only (--static)" if args.static else "recipe, files and datasets",
    }
    print(f"{args.recipe}: ok {json.dumps(summary)}")
    for note in notes:
        print(f"  note: {note}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from orchestrator.server.main import serve
        from orchestrator.server.settings import ServerLimits
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
    try:
        asyncio.run(
            serve(args.recipes, host=args.host, port=args.port, api_key=api_key, limits=limits)
        )
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on
        print("server stopped", file=sys.stderr)
    return 0


def _list_strategies(args: argparse.Namespace) -> int:
    from strategies.base import STRATEGIES

    for name, cls in STRATEGIES:
        print(f"{name}: {cls.description}")
        _print_fields(cls.config_model, skip={"name"})
    return 0


def _list_scorers(args: argparse.Namespace) -> int:
    from core.scoring import SCORERS

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

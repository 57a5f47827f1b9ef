"""What ``branchwise validate`` checks beyond the recipe's own fields: that it can start.

Local model folders exist and hold a model, a chat prompt has a chat template to render, the
data set exists and every line reads. A model named like a hub id (``org/name``) that is not
a folder here must be in the Hugging Face cache (else a run would stall on a download, or
fail after it); ``--static`` skips these checks for recipes meant for another machine.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.recipe import Recipe

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_resources(recipe: Recipe) -> list[str]:
    """Raise RecipeError naming the first thing that would stop a run; return notes."""
    notes: list[str] = []
    policy = None
    if recipe.engine.kind == "vllm":  # openai: `model` is the name the server serves
        policy = _model_folder(recipe, "engine.model", getattr(recipe.engine, "model", None), notes)
    elif recipe.engine.kind == "openai":
        tokenizer = getattr(recipe.engine, "tokenizer", None)
        policy = _model_folder(recipe, "engine.tokenizer", tokenizer, notes)
    needs_template = recipe.prompt.style == "chat" and recipe.prompt.chat_template is None
    if needs_template and policy is not None and not _has_chat_template(policy):
        raise RecipeError(
            f"prompt.style: chat, but {policy} has no chat_template in its tokenizer "
            "files; give prompt.chat_template"
        )
    if recipe.prompt.chat_template is not None:
        try:
            recipe.prompt.resolved_chat_template(recipe.base_dir)
        except ValueError as exc:
            raise RecipeError(str(exc)) from None
    for name, named in recipe.engines.items():
        if named.kind == "vllm":
            _model_folder(recipe, f"engines.{name}.model", getattr(named, "model", None), notes)
    for index, scorer in enumerate(recipe.scorers):
        backend = getattr(scorer, "backend", None)
        model = getattr(scorer, "model", None)
        if isinstance(model, str) and backend in ("vllm", "torch"):
            _model_folder(recipe, f"scorers.{index}.model", model, notes)
    budget = recipe.budget.max_generated_tokens
    if budget is not None and budget < recipe.sampling.max_tokens:
        raise RecipeError(
            f"budget.max_generated_tokens: {budget} is less than one completion "
            f"(sampling.max_tokens {recipe.sampling.max_tokens}); no path could finish"
        )
    if recipe.dataset is not None:
        spec = recipe.dataset
        load_problems(recipe.resolve(spec.path), format=spec.format, fields=spec.field_map())
    return notes


def _model_folder(recipe: Recipe, where: str, name: str | None, notes: list[str]) -> Path | None:
    """The local folder ``name`` points at, None for a hub name; raise if it is missing."""
    if name is None:
        return None
    folder = recipe.resolve(name)
    if folder.is_dir():
        if not (folder / "config.json").is_file() and not (folder / "tokenizer.json").is_file():
            raise RecipeError(f"{where}: {folder} holds no model (no config.json)")
        return folder
    if _HUB_NAME.match(name) and not name.startswith("."):
        if _in_hub_cache(name):
            notes.append(f"{where}: {name!r} is not a folder here; taken from the hub cache")
            return None
        # vLLM would try to download it, and fail late (or slowly) where it cannot
        raise RecipeError(
            f"{where}: {name!r} is neither a folder here ({folder}) nor a model in the "
            f"Hugging Face cache; fix the path, or download it first (`hf download {name}`); "
            "`validate --static` checks the recipe alone"
        )
    raise RecipeError(f"{where}: model folder {folder} does not exist")


def _in_hub_cache(name: str) -> bool:
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    return (Path(cache) / f"models--{name.replace('/', '--')}" / "snapshots").is_dir()


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("chat_template"))

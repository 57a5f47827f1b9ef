"""The served models: one recipe each, named by its file's stem, on engines of their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from branchwise.core.errors import RecipeError
from branchwise.orchestrator.engines.base import Engine
from branchwise.orchestrator.engines.types import SamplingSpec
from branchwise.orchestrator.ledger import Budget
from branchwise.orchestrator.recipe import Recipe, load_recipe
from branchwise.orchestrator.runner import Orchestrator
from branchwise.orchestrator.server.errors import ApiError, bad_field
from branchwise.orchestrator.server.protocol import SearchRequest
from branchwise.orchestrator.server.settings import ServerLimits
from branchwise.orchestrator.validation import check_resources


@dataclass
class ServedModel:
    """One recipe behind a model name, with the orchestrator that owns its engine."""

    name: str
    recipe: Recipe
    orchestrator: Orchestrator

    def for_request(
        self, request: SearchRequest, limits: ServerLimits, run_id: str
    ) -> Orchestrator:
        """An orchestrator for one request: the recipe with the request's overrides, on the
        model's engine and scorers; its engine request ids start with ``run_id``."""
        orchestrator = Orchestrator(
            request_recipe(self.recipe, request, limits),
            engine=self.orchestrator.engine,
            scorers=self.orchestrator.scorers,
            engines=self.orchestrator.engines,
        )
        orchestrator.run_id = run_id
        return orchestrator


def request_recipe(recipe: Recipe, request: SearchRequest, limits: ServerLimits) -> Recipe:
    """The recipe one request runs: its sampling, seed and budget overrides, then the caps.

    ``max_generated_tokens`` and ``max_seconds`` never pass the server's caps: a request
    asking for more was refused already; a recipe leaving them unlimited (or larger) gets
    the cap. The budget a search ran under is in every response (``branchwise.budget``).
    """
    sampling = recipe.sampling
    if request.sampling:
        sampling = SamplingSpec.model_validate({**sampling.model_dump(), **request.sampling})
        if sampling.method == "arithmetic" and sampling.temperature == 0:
            raise bad_field(
                "temperature",
                f"model {request.model!r} spreads its samples over the model's distribution "
                "(arithmetic sampling); at temperature 0 they would all be the one greedy "
                "answer: send a temperature above 0",
            )
    _check_thinking(recipe, request)
    budget = Budget.model_validate({**recipe.budget.model_dump(), **request.budget})
    caps: dict[str, float | int] = {}
    for key in ("max_generated_tokens", "max_seconds"):
        cap, value = getattr(limits, key), getattr(budget, key)
        if value is None or value > cap:
            caps[key] = cap
    for key in ("max_thinking_tokens", "min_thinking_tokens"):  # unset stays unset
        value = getattr(budget, key)
        if value is not None and value > limits.max_thinking_tokens:
            caps[key] = limits.max_thinking_tokens
    if caps:
        budget = budget.model_copy(update=caps)
    update: dict[str, object] = {"sampling": sampling, "budget": budget}
    if request.seed is not None:
        update["seed"] = request.seed
    return recipe.model_copy(update=update)


def _check_thinking(recipe: Recipe, request: SearchRequest) -> None:
    """A thinking budget needs a reasoning model's recipe and an engine that forces tokens."""
    for key in ("max_thinking_tokens", "min_thinking_tokens"):
        if request.budget.get(key) is None:
            continue
        if recipe.reasoning is None:
            raise bad_field(
                key, f"model {request.model!r} has no reasoning format (not a thinking model)"
            )
        if not recipe.engine.token_level:
            raise bad_field(
                key, f"model {request.model!r} runs on an engine that cannot force tokens"
            )


class ModelCatalog:
    """The served recipes by model name; ``async with`` starts (and stops) their engines.

    Recipes whose ``engine`` sections are the same (and that sit in the same folder, since
    model paths are relative to it) share one engine, so serving several strategies over
    one model loads it once.

    ``engines``: engines already running, by model name, used instead of building the
    recipe's (tests share one vLLM engine this way); the catalog does not stop them.
    """

    def __init__(
        self, recipes: Mapping[str, Recipe], *, engines: Mapping[str, Engine] | None = None
    ) -> None:
        engines = engines or {}
        built: dict[str, Engine] = {}
        self.models: dict[str, ServedModel] = {}
        for name, recipe in recipes.items():
            # recipes with the same engine section (from the same folder) share one engine:
            # the first owns it, and is entered first, so it is stopped last
            key = f"{recipe.engine.model_dump_json()}@{recipe.base_dir}"
            engine = engines.get(name) or built.get(key)
            orchestrator = Orchestrator(recipe, engine=engine)
            if engine is None:
                built[key] = orchestrator.engine
            self.models[name] = ServedModel(name, recipe, orchestrator)
        self._stack = AsyncExitStack()

    @staticmethod
    def load(
        paths: Sequence[Path], limits: ServerLimits, *, check: bool = True
    ) -> dict[str, Recipe]:
        """Recipes by file stem; RecipeError names the file of a bad or clashing one."""
        recipes: dict[str, Recipe] = {}
        for path in paths:
            name = path.stem
            if name in recipes:
                raise RecipeError(
                    f"{path}: a served model is named by its file's stem, and {name!r} is "
                    "already taken by another recipe; rename one file"
                )
            recipe = load_recipe(path)
            if recipe.budget.run_generated_tokens is not None:
                raise RecipeError(
                    f"{path}: budget.run_generated_tokens is split over the problems of one "
                    "run, and a server answers requests one search at a time; remove it "
                    "(budget.max_generated_tokens caps each search)"
                )
            if check:
                check_resources(recipe)
            if recipe.sampling.max_tokens > limits.max_tokens:
                raise RecipeError(
                    f"{path}: sampling.max_tokens is {recipe.sampling.max_tokens}, above the "
                    f"server's --max-tokens {limits.max_tokens}"
                )
            recipes[name] = recipe
        return recipes

    def get(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models))
            raise ApiError(
                404,
                f"model {name!r} does not exist; served models: {known}",
                param="model",
                code="model_not_found",
            )
        return model

    async def __aenter__(self) -> Self:
        try:
            for model in self.models.values():
                await self._stack.enter_async_context(model.orchestrator)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

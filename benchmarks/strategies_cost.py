"""The second cost axis of strategies.py: total compute, policy and PRM together.

Generated tokens alone hide the PRM: it reads every scored path (prompt and steps), which is
2-8x the generated tokens for the PRM strategies. Compute here is tokens x parameters (a
forward pass costs about 2 x parameters FLOPs per token, so the factor 2 is left out):
policy (prompt + generated tokens) x policy parameters + PRM tokens x PRM parameters. The
share of the policy's prompt tokens that vLLM's prefix cache served is reported apart (it is
counted in the total: the tokens were part of the work, the cache only saved recomputing
them). The PRM's own prefix-cache hits are not measured, so its tokens count in full.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from safetensors import safe_open


def parameter_count(model: Path) -> int:
    """Parameters in a model folder's safetensors files (read from headers, nothing loaded)."""
    files = sorted(model.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"{model}: no *.safetensors file to count parameters in")
    total = 0
    for file in files:
        with safe_open(str(file), framework="numpy") as weights:
            total += sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
    return total


def compute(
    row: dict[str, Any], policy_params: int, prm_params: int, target_params: int = 0
) -> dict[str, float]:
    """Per-problem compute of one row, in token-parameters (x 2 for FLOPs). A row that used
    the target policy (RSD, target-only) says how many tokens each policy processed; each
    counts at its own size."""
    prompt = float(row.get("prompt_tokens_per_problem", 0.0))
    cached = prompt * float(row.get("cache_hit_rate", 0.0))
    policy = (prompt + float(row["tokens_per_problem"])) * policy_params
    cached_compute = cached * policy_params
    if "target_tokens_per_problem" in row:
        policy = (
            float(row["draft_tokens_per_problem"]) * policy_params
            + float(row["target_tokens_per_problem"]) * target_params
        )
        cached_compute = (
            float(row.get("draft_cached_per_problem", 0.0)) * policy_params
            + float(row.get("target_cached_per_problem", 0.0)) * target_params
        )
    prm = float(row.get("prm_tokens_per_problem", 0.0)) * prm_params if row["set"] == "prm" else 0.0
    return {
        "compute_per_problem": policy + prm,
        "policy_compute_per_problem": policy,
        "prm_compute_per_problem": prm,
        "cached_compute_per_problem": cached_compute,
    }

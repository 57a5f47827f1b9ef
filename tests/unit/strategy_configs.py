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
}

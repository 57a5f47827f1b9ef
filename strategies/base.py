"""The strategy contract: a pydantic config plus ``async search(ctx) -> SearchResult``.

A strategy talks only to the :class:`~orchestrator.context.SearchContext`. If it runs out of
budget mid-search, the runner catches :class:`BudgetExhausted` and asks :meth:`anytime` for
the best answer the graph holds so far.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from branchwise.core.registry import Registry
from branchwise.strategies.selection import majority_vote

if TYPE_CHECKING:
    from branchwise.orchestrator.context import SearchContext


class StrategyConfig(BaseModel):
    """Base of every strategy's config; ``name`` selects the registered strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registered strategy name (see `branchwise strategies`).")

    def partial_path_scorers(self) -> tuple[str, ...]:
        """Fields naming a scorer this config uses on unfinished paths; a recipe naming an
        answer-only checker there is refused (every unfinished path would score the same)."""
        return ()


@dataclass(frozen=True)
class SearchResult:
    """A strategy's answer, the node it came from, and strategy-specific facts."""

    answer: str | None
    node_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class of all strategies (the registry checks subclassing)."""

    config_model: ClassVar[type[StrategyConfig]] = StrategyConfig
    description: ClassVar[str] = ""
    # True for strategies that force tokens onto paths (``ctx.extend``): they need a
    # TokenEngine, and a recipe pairing them with another engine is refused.
    needs_token_engine: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig) -> None:
        self.config = config

    @abstractmethod
    async def search(self, ctx: SearchContext) -> SearchResult:
        """Run the search for one problem."""

    def anytime(self, ctx: SearchContext) -> SearchResult:
        """Best answer so far when the budget ran out: a vote over finished nodes."""
        finished = [n for n in ctx.graph.terminals() if n.answer is not None]
        vote = majority_vote(finished)
        return SearchResult(
            answer=vote.answer, node_id=vote.node_id, detail={"anytime": True, **vote.detail}
        )


# The built-in strategies, by import path: each is imported only when a recipe names it.
BUILTIN_STRATEGIES: dict[str, str] = {
    "best_of_n": "branchwise.strategies.best_of_n:BestOfN",
    "self_consistency": "branchwise.strategies.self_consistency:SelfConsistency",
    "adaptive_self_consistency": (
        "branchwise.strategies.adaptive_consistency:AdaptiveSelfConsistency"
    ),
    "deepconf": "branchwise.strategies.deepconf:DeepConf",
    "mbr": "branchwise.strategies.mbr:MBR",
    "first_finish": "branchwise.strategies.first_finish:FirstFinish",
    "entropy_branching": "branchwise.strategies.entropy_branching:EntropyBranching",
    "beam_search": "branchwise.strategies.beam_search:BeamSearch",
    "dvts": "branchwise.strategies.dvts:DVTS",
    "mcts": "branchwise.strategies.mcts:MCTS",
    "ab_mcts": "branchwise.strategies.ab_mcts:ABMCTS",
    "ab_mcts_m": "branchwise.strategies.ab_mcts_m:ABMCTSM",
    "particle_filter": "branchwise.strategies.particle_filter:ParticleFilter",
    "a_star": "branchwise.strategies.a_star:AStar",
}

STRATEGIES: Registry[Strategy] = Registry(
    "strategy", Strategy, group="branchwise.strategies", builtins=BUILTIN_STRATEGIES
)

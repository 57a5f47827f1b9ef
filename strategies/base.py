"""The strategy contract: a pydantic config plus ``async search(port) -> SearchResult``.

A strategy talks only to the :class:`~branchwise.core.port.SearchPort`. It owns how its
answer is picked from a tree (:meth:`Strategy.select`), which the runner also asks for when
the budget ends a search mid-way (:meth:`Strategy.anytime`) and the metrics ask for when
they re-select from a run's first N samples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from branchwise.core.port import SearchPort, TreeView
from branchwise.core.registry import Registry
from branchwise.core.values import Aggregation
from branchwise.strategies.selection import majority_vote


class StrategyConfig(BaseModel):
    """Base of every strategy's config; ``name`` selects the registered strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registered strategy name (see `branchwise strategies`).")

    def partial_path_scorers(self) -> tuple[str, ...]:
        """Fields naming a scorer this config uses on unfinished paths; a recipe naming an
        answer-only checker there is refused (every unfinished path would score the same)."""
        return ()

    def declared_aggregation(self) -> Aggregation | None:
        """How this strategy folds step values into a value (None: the scorer's own)."""
        return None

    def pairwise_scorers(self) -> tuple[str, ...]:
        """Fields naming a scorer this config compares pairs with (``port.compare``); a
        recipe naming a scorer there that cannot compare pairs is refused."""
        return ()

    def named_engines(self) -> tuple[str, ...]:
        """Fields naming one of the recipe's `engines` (``port.expand_with``); a recipe
        without an engine of that name is refused."""
        return ()


class _Aggregating(StrategyConfig):
    aggregation: Aggregation | None = Field(
        None,
        description="Fold a step-level scorer's step values into a path value: min, product, "
        "last, mean, geometric_mean or weighted_mean. Unset: the scorer's own value (a reward "
        "model folds its steps by the aggregation in its config); set it here or there, not "
        "both.",
    )

    def declared_aggregation(self) -> Aggregation | None:
        return self.aggregation


class ScoredConfig(_Aggregating):
    """A strategy guided by a scorer: the fields every such config shares, declared once."""

    scorer: str = Field(
        description="Scorer (by recipe name) whose values guide the search and rank its paths."
    )


class OptionallyScoredConfig(_Aggregating):
    """A strategy that may use a scorer (to weight or select), declared once."""

    scorer: str | None = Field(
        None, description="Scorer (by recipe name) used to weight or select answers, if any."
    )


ConfigT = TypeVar("ConfigT", bound=StrategyConfig)


@dataclass(frozen=True)
class SearchResult:
    """A strategy's answer, the node it came from, and strategy-specific facts."""

    answer: str | None
    node_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC, Generic[ConfigT]):
    """Base of all strategies (the registry checks subclassing), generic in its config."""

    config_model: ClassVar[type[StrategyConfig]] = StrategyConfig
    description: ClassVar[str] = ""
    # True for strategies that force tokens onto paths (``port.extend``): they need a
    # TokenEngine, and a recipe pairing them with another engine is refused.
    needs_token_engine: ClassVar[bool] = False
    # True when the samples are independent whole solutions from the root, so the first N
    # of a run of n are exactly a run of N (the metrics re-select from them with `select`).
    samples_independent: ClassVar[bool] = False
    # True for strategies that work on a reasoning model's thinking (``port.think``): a
    # recipe without a `reasoning` format is refused.
    needs_reasoning: ClassVar[bool] = False
    # True for strategies that ask the log-probabilities of given tokens
    # (``port.logprobs_of``): a recipe whose engine cannot score them is refused.
    needs_given_logprobs: ClassVar[bool] = False

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    async def search(self, port: SearchPort) -> SearchResult:
        """Run the search for one problem."""

    def select(self, tree: TreeView) -> SearchResult:
        """The answer this strategy picks from ``tree``: by default a majority vote over
        its finished nodes."""
        finished = [n for n in tree.terminals() if n.answer is not None]
        vote = majority_vote(finished)
        return SearchResult(answer=vote.answer, node_id=vote.node_id, detail=dict(vote.detail))

    def anytime(self, port: SearchPort) -> SearchResult:
        """Best answer so far when the budget ran out: :meth:`select` on the tree as it is."""
        picked = self.select(port)
        return SearchResult(picked.answer, picked.node_id, {"anytime": True, **picked.detail})


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
    "best_first_beam_search": "branchwise.strategies.best_first_beam:BestFirstBeamSearch",
    "diverse_beam_search": "branchwise.strategies.diverse_beam:DiverseBeamSearch",
    "cp_beam_search": "branchwise.strategies.cp_beam:CPBeamSearch",
    "treebon": "branchwise.strategies.treebon:TreeBoN",
    "phi_decoding": "branchwise.strategies.phi_decoding:PhiDecoding",
    "budget_forcing": "branchwise.strategies.budget_forcing:BudgetForcing",
    "rpc": "branchwise.strategies.rpc:RPC",
    "cover_pruning": "branchwise.strategies.cover_pruning:CoverPruning",
    "div_sampling": "branchwise.strategies.div_sampling:DivSampling",
    "sample_scrutinize": "branchwise.strategies.sample_scrutinize:SampleScrutinize",
    "osca": "branchwise.strategies.osca:OSCA",
    "power_sampling": "branchwise.strategies.power_sampling:PowerSampling",
    "speculative_consensus": ("branchwise.strategies.speculative_consensus:SpeculativeConsensus"),
    "rsd": "branchwise.strategies.rsd:RewardGuidedSpeculative",
}

STRATEGIES: Registry[Strategy[Any]] = Registry(
    "strategy", Strategy, group="branchwise.strategies", builtins=BUILTIN_STRATEGIES
)

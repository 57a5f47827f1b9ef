"""RPC: perplexity consistency with reasoning pruning."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.sampling import sample_solutions
from branchwise.strategies.selection import weighted_vote
from branchwise.strategies.weibull_mixture import fit_weibull_mixture


class RPCConfig(StrategyConfig):
    name: Literal["rpc"] = "rpc"
    n: int = Field(16, ge=1, description="Solutions sampled.")
    batch: int | None = Field(None, ge=1, description="Samples per engine request (default n).")
    pruning: bool = Field(
        True,
        description="Reasoning pruning: drop paths that the low component of a two-Weibull "
        "mixture over path probabilities explains better and whose probability is below the "
        "mean, before the vote.",
    )
    distinct_paths: bool = Field(
        True,
        description="Perplexity consistency sums the probability of each distinct reasoning "
        "path once: a path sampled twice (same text) adds its probability once.",
    )
    min_paths_to_prune: int = Field(
        4,
        ge=3,
        description="Fewest answered paths before pruning is tried (a two-component fit on "
        "fewer says nothing).",
    )


class RPC(Strategy[RPCConfig]):
    """RPC (Zhou et al. 2025, "A Theoretical Study on Bridging Internal Probability and
    Self-Consistency for LLM Reasoning").

    Each path's probability is exp(mean token logprob) (the paper's code uses the mean
    logprob). Reasoning pruning fits a two-component Weibull mixture to the problem's path
    probabilities (EM here, the mixing weight bounded to [0.2, 0.8] as in the paper's fit)
    and drops a path when the low component explains it better and its probability is below
    the mean. Perplexity consistency then gives each answer the summed probability of its
    distinct surviving paths and picks the largest (ties: the earliest node). Pruning is a
    filter on the vote, not on the tree, so re-selecting from a run's first N samples gives
    the answer of a run with n = N. Cost: N samples with their token logprobs; no scorer
    calls. Knobs: ``n``, ``batch``, ``pruning``, ``distinct_paths``, ``min_paths_to_prune``.
    """

    config_model = RPCConfig
    description = "Vote by summed path probability after pruning low-probability paths (RPC)."
    samples_independent: ClassVar[bool] = True

    async def search(self, port: SearchPort) -> SearchResult:
        nodes = await sample_solutions(port, self.config.n, self.config.batch, logprobs=0)
        if nodes and not any(n.token_logprobs for n in nodes):
            raise ValueError("rpc needs token logprobs; the engine returned none")
        picked = self.select(port)
        return SearchResult(picked.answer, picked.node_id, {**picked.detail, "samples": len(nodes)})

    def select(self, tree: TreeView) -> SearchResult:
        """The answer with the largest summed probability of its distinct, unpruned paths."""
        voting = [n for n in tree.terminals() if n.answer is not None and n.token_logprobs]
        probability = {n.id: path_probability(tree, n) for n in voting}
        pruned = self._pruned(voting, probability)
        seen: set[str] = set()
        counted: set[str] = set()
        for node in voting:  # terminals() is in path order: the first copy of a path counts
            key = tree.solution(node) if self.config.distinct_paths else node.id
            if node.id not in pruned and key not in seen:
                seen.add(key)
                counted.add(node.id)
        picked = weighted_vote(voting, lambda n: probability[n.id] if n.id in counted else 0.0)
        detail = {
            "samples": len(voting),
            "pruned": len(pruned),
            "duplicates": len(voting) - len(pruned) - len(counted),
            **picked.detail,
        }
        return SearchResult(picked.answer, picked.node_id, detail)

    def _pruned(self, voting: list[Node], probability: dict[str, float]) -> set[str]:
        if not self.config.pruning or len(voting) < self.config.min_paths_to_prune:
            return set()
        values = [probability[n.id] for n in voting]
        mixture = fit_weibull_mixture(values)
        if mixture is None:  # every path equally likely: nothing to tell apart
            return set()
        mean = math.fsum(values) / len(values)
        low = mixture.low_membership(values)
        return {n.id for n, v, m in zip(voting, values, low, strict=True) if m > 0.5 and v < mean}


def path_probability(tree: TreeView, node: Node) -> float:
    """exp of the mean token logprob over the path's generated tokens."""
    logprobs = [lp for step in tree.path(node)[1:] for lp in step.token_logprobs]
    return math.exp(math.fsum(logprobs) / len(logprobs)) if logprobs else 0.0

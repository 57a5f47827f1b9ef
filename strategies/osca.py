"""OSCA: a sample budget split across sampling configurations by a learned allocation."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from branchwise.core.graph import Node
from branchwise.core.port import PromptVariant, SearchPort, TreeView
from branchwise.strategies.base import OptionallyScoredConfig, SearchResult, Strategy
from branchwise.strategies.sampling import gathered
from branchwise.strategies.selection import argmax, majority_vote, weighted_vote


class SamplingConfiguration(BaseModel):
    """One way to sample a whole solution: a temperature and a change to the prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(
        None, ge=0.0, description="Sampling temperature (unset: the recipe's)."
    )
    system: str = Field("", description="Added to the system prompt (a role, an instruction).")
    question: str = Field("", description="Added after the question (a hint, another approach).")


class OSCAConfig(OptionallyScoredConfig):
    name: Literal["osca"] = "osca"
    configurations: dict[str, SamplingConfiguration] = Field(
        min_length=1,
        description="The sampling configurations, by name (a name labels its samples).",
    )
    allocation: dict[str, int] = Field(
        description="Samples per configuration name (the learned mix; `branchwise.orchestrator"
        ".osca_fit` fits it on val). Names left out get none.",
    )
    selection: Literal["vote", "best", "weighted_vote"] = Field(
        "vote",
        description="vote: majority over all samples (self-consistency); best: the sample "
        "`scorer` ranks highest (best-of-N); weighted_vote: answers weighted by `scorer`.",
    )

    @model_validator(mode="after")
    def _check(self) -> OSCAConfig:
        unknown = sorted(set(self.allocation) - set(self.configurations))
        if unknown:
            raise ValueError(
                f"allocation: {unknown} are not in configurations ({sorted(self.configurations)})"
            )
        negative = sorted(name for name, k in self.allocation.items() if k < 0)
        if negative:
            raise ValueError(f"allocation: {negative} have a negative number of samples")
        if sum(self.allocation.values()) < 1:
            raise ValueError("allocation: allocates no samples; give some configuration >= 1")
        if self.selection != "vote" and not self.scorer:
            raise ValueError(f"selection {self.selection!r} needs `scorer` (a recipe scorer)")
        return self

    @property
    def samples(self) -> int:
        return sum(self.allocation.values())


class OSCA(Strategy[OSCAConfig]):
    """OSCA (Zhang et al. 2025, "Scaling LLM Inference with Optimized Sample Compute
    Allocation", NAACL): one budget of samples split across sampling configurations.

    Different configurations (temperatures, prompts) solve different problems; the paper
    learns on training problems how many samples each should get (``allocation``) and keeps
    that mix on new problems. This strategy applies a given mix: ``allocation[c]`` whole
    solutions under configuration ``c``, each prompt change rendered by the orchestrator
    (``port.sample_variant``, so every sample carries its configuration's name), then a
    majority vote (``selection: vote``) or a scorer's pick (``best``, ``weighted_vote``).
    The fitting (exact or hill-climbing search over integer splits, for coverage or for the
    vote's accuracy) lives in ``branchwise.orchestrator.osca_fit``. Not built: the paper's
    mixing of several models (one policy engine per recipe here).
    Cost: ``sum(allocation)`` samples, one request per configuration used; scorer calls
    only for ``best``/``weighted_vote``. Knobs: ``configurations``, ``allocation``,
    ``selection``, ``scorer``.
    """

    config_model = OSCAConfig
    description = "A learned mix of sampling configurations (temperatures, prompts); vote."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        used = [(name, k) for name, k in sorted(cfg.allocation.items()) if k > 0]
        outcomes = await asyncio.gather(
            *(self._sample(port, name, k) for name, k in used), return_exceptions=True
        )
        nodes = gathered(outcomes)
        if cfg.selection != "vote":
            assert cfg.scorer is not None
            await port.score([n for n in nodes if n.answer is not None], cfg.scorer)
        picked = self.select(port)
        return SearchResult(picked.answer, picked.node_id, {**picked.detail, "samples": len(nodes)})

    async def _sample(self, port: SearchPort, name: str, k: int) -> list[Node]:
        conf = self.config.configurations[name]
        variant = PromptVariant(name, system=conf.system, question=conf.question)
        return await port.sample_variant(k, variant, temperature=conf.temperature)

    def select(self, tree: TreeView) -> SearchResult:
        """A vote over every finished sample, or the scorer's pick among them."""
        cfg = self.config
        voting = [n for n in tree.terminals() if n.answer is not None]
        scorer = cfg.scorer
        scored = scorer is not None and all(tree.score_of(n, scorer) is not None for n in voting)
        if cfg.selection == "best" and scorer is not None and scored:
            picked = argmax(voting, lambda n: tree.value(n, scorer))
        elif cfg.selection == "weighted_vote" and scorer is not None and scored:
            picked = weighted_vote(voting, lambda n: max(tree.value(n, scorer) or 0.0, 0.0))
        else:  # a vote, or cut short before every sample was scored
            picked = majority_vote(voting)
        by_configuration: dict[str, int] = {}
        for node in voting:
            label = node.prompt_variant or ""
            by_configuration[label] = by_configuration.get(label, 0) + 1
        detail = {"answered": len(voting), "by_configuration": by_configuration, **picked.detail}
        return SearchResult(picked.answer, picked.node_id, detail)

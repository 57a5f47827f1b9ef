"""Reward-guided speculative decoding: a draft policy writes, a PRM decides what the target
rewrites."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from branchwise.core.graph import Node
from branchwise.core.port import SearchPort, TreeView
from branchwise.core.values import Aggregation
from branchwise.strategies.base import ScoredConfig, SearchResult, Strategy


class RSDConfig(ScoredConfig):
    name: Literal["rsd"] = "rsd"
    target_engine: str = Field(
        description="The recipe's engine (by name in `engines`) that rewrites rejected steps: "
        "the large target policy; the recipe's own `engine` is the small draft."
    )
    threshold: float = Field(
        0.7,
        ge=0,
        le=1,
        description="A draft step whose value (the PRM's score of the step in its context) is "
        "at least this is kept; below it, the target rewrites the step (the paper's delta).",
    )
    aggregation: Aggregation | None = Field(
        "last",
        description="How step values become the draft step's value: `last` (default) reads "
        "the PRM's score of the newest step given its prefix, as the paper's reward r(y_i | "
        "x, y_<i); `min` would also reject a step for an earlier one's flaw.",
    )
    max_steps: int = Field(
        32, ge=1, description="Steps before the target writes the rest of the path at once."
    )
    step_max_tokens: int | None = Field(
        None, ge=1, description="Token cap per step (default: the recipe's sampling.max_tokens)."
    )

    def partial_path_scorers(self) -> tuple[str, ...]:
        return ("scorer",)

    def named_engines(self) -> tuple[str, ...]:
        return ("target_engine",)


class RewardGuidedSpeculative(Strategy[RSDConfig]):
    """Reward-guided speculative decoding (RSD; Liao et al. 2025, "Reward-Guided Speculative
    Decoding for Efficient LLM Reasoning").

    One path, one reasoning step at a time: the recipe's engine (the cheap draft policy)
    writes the step; the PRM (``scorer``) values it in its context; a value at or above
    ``threshold`` keeps it, below it the step is pruned and the target engine
    (``target_engine``, one of the recipe's ``engines``) writes that step from the same
    prefix instead. This is the paper's binary weighting w(r) = 1[r >= delta], which mixes the
    two policies step by step; unlike token-level speculative decoding it does not keep the
    target's distribution, and trades that for skipping the target wherever the draft's step
    is judged good. Cost per step: one draft step, one PRM call on it, and with probability
    (1 - acceptance) one target step. Per token (sizes as parameter counts, prompts aside) the
    share of target-only compute saved is acceptance - (draft + PRM) / target: it pays off
    only with a draft and PRM much smaller than the target, as the paper's (1.5B draft and
    7B PRM for a 72B target). Knobs: ``threshold`` (delta; 0 keeps every draft step,
    1 rewrites nearly every one), ``target_engine``, ``scorer`` and ``aggregation`` (default
    ``last``: the newest step's score), ``max_steps`` (then the target finishes the path),
    ``step_max_tokens``. The answer is the path's; the detail counts steps by writer.
    """

    config_model = RSDConfig
    description = "Draft writes each step; the PRM keeps it or the target rewrites it (RSD)."

    async def search(self, port: SearchPort) -> SearchResult:
        cfg = self.config
        node = port.root
        drafted = rewritten = 0
        for _ in range(cfg.max_steps):
            draft = (await port.expand(node, 1, max_tokens=cfg.step_max_tokens))[0]
            value = None
            if port.status(draft) != "failed":
                value = (await port.values([draft], cfg.scorer))[0]
            if value is not None and value >= cfg.threshold:
                node, drafted = draft, drafted + 1
            else:
                if port.status(draft) != "failed":
                    port.prune([draft])
                node = await self._target_step(port, node, one_step=True)
                rewritten += 1
            if node.terminal or port.status(node) == "failed":
                break
        else:
            node = await self._target_step(port, node, one_step=False)
            rewritten += 1
        steps = drafted + rewritten
        detail = {
            "draft_steps": drafted,
            "target_steps": rewritten,
            "draft_share": round(drafted / steps, 4) if steps else 0.0,
        }
        return SearchResult(node.answer, node.id if node.terminal else None, detail)

    async def _target_step(self, port: SearchPort, node: Node, *, one_step: bool) -> Node:
        cap = self.config.step_max_tokens if one_step else None
        written = await port.expand_with(
            self.config.target_engine, node, 1, one_step=one_step, max_tokens=cap
        )
        return written[0]

    def select(self, tree: TreeView) -> SearchResult:
        """The one finished path (rejected drafts are pruned, so never candidates)."""
        finished = [n for n in tree.terminals() if n.answer is not None]
        if not finished:
            return SearchResult(None, None, {})
        return SearchResult(finished[-1].answer, finished[-1].id, {})

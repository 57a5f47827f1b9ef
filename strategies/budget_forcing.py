"""Budget forcing: one path whose thinking length is scaled sequentially (s1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from branchwise.core.port import SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig


class BudgetForcingConfig(StrategyConfig):
    name: Literal["budget_forcing"] = "budget_forcing"
    waits: int = Field(
        1,
        ge=0,
        description="Times the model's end of thinking is replaced by the recipe's "
        "continuation word (s1's 'Wait'), so it thinks on; more waits, longer thinking.",
    )
    max_thinking_tokens: int | None = Field(
        None,
        ge=1,
        description="Most thinking tokens on the path; there the end tag is forced (unset: "
        "the recipe's `sampling.max_tokens`).",
    )


class BudgetForcing(Strategy[BudgetForcingConfig]):
    """Budget forcing (Muennighoff et al. 2025, "s1: Simple test-time scaling").

    Sequential scaling of a reasoning model's thinking: one path thinks until the model would
    close its thinking; up to ``waits`` times the end tag is left off and the continuation
    word is forced instead, and at ``max_thinking_tokens`` the end tag is forced; then the
    answer is written after it. Cost: one path of at most ``max_thinking_tokens`` thinking
    tokens plus its answer, in ``waits + 2`` requests at most; no scorer. Needs the recipe's
    ``reasoning`` format and an engine that forces tokens.
    """

    config_model = BudgetForcingConfig
    description = "One path; extend its thinking with 'Wait' (waits) or cut it (a cap)."
    needs_token_engine = True
    needs_reasoning = True

    async def search(self, port: SearchPort) -> SearchResult:
        cap = self.config.max_thinking_tokens or port.max_tokens
        node, waits = port.root, 0
        while not node.terminal and node.thinking_open:
            left = cap - port.thinking_tokens(node)
            allowed = port.thinking_left(node)  # the budget's cap (a request's, on the server)
            if allowed is not None:
                left = min(left, allowed)
            if left <= 0:
                break
            last = waits >= self.config.waits  # no wait left: the model's own end stays
            node = await port.think(node, max_tokens=left, keep_end=last)
            if node.terminal or port.status(node) != "open" or not node.thinking_open:
                break  # closed, ended inside its thinking, or failed
            if node.finish_reason == "stop":
                node = await port.continue_thinking(node)
                waits += 1
        if not node.terminal and node.thinking_open and port.status(node) == "open":
            node = await port.end_thinking(node)
        if not node.terminal and port.status(node) == "open":
            [node] = await port.expand(node, 1, one_step=False)
        detail = {"waits": waits, "thinking_tokens": port.thinking_tokens(node)}
        return SearchResult(node.answer, node.id, detail)

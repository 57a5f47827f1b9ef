"""Thinking budgets on a reasoning model's paths (s1's budget forcing, Muennighoff et al. 2025).

``budget.max_thinking_tokens``: a path still thinking at the limit has the end tag forced onto
it (by token ids, as ``extend`` places tokens) and goes on to its answer.
``budget.min_thinking_tokens``: an end tag written before the minimum is taken out and the
recipe's continuation word ("Wait") is forced in its place, so the model thinks on.

Both act in :meth:`ThinkingBudget.expand`, which stands in for the plain expansion while a
path thinks: a thinking request is capped at the tokens left to think and, when a minimum is
pending, stops at the end tag. Whole-solution requests (``one_step=False``) carry every path
through forcing to its answer and return its last node; one-step requests return the step,
or the forced node after it. An end tag taken off the path was generated and paid for: it
stays in the graph as a pruned child of the node before it. Streams (``port.stream``) are
not budgeted.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from branchwise.core.graph import Node
from branchwise.core.reasoning import ReasoningTags, find_ids
from branchwise.orchestrator.engines.types import Completion, FinishReason, SamplingSpec
from branchwise.orchestrator.generation import Generation, Rewritten


class ThinkingBudget:
    """Caps and floors on each path's thinking tokens, for one search."""

    def __init__(
        self,
        generation: Generation,
        tags: ReasoningTags,
        *,
        max_thinking: int | None,
        min_thinking: int | None,
    ) -> None:
        self.generation = generation
        self.tags = tags
        self.max_thinking = max_thinking
        self.min_thinking = min_thinking

    def thought(self, node: Node) -> int:
        """Thinking tokens on the path to ``node`` (forced ones included)."""
        return sum(n.thinking_tokens for n in self.generation.graph.path(node.id))

    async def expand(self, node: Node, k: int, spec: SamplingSpec, one_step: bool) -> list[Node]:
        """``k`` children of ``node`` under the thinking budget (see the module's text)."""
        if not node.thinking_open:
            return await self.generation.expand(node, k, spec, one_step)
        used = self.thought(node)
        if self.max_thinking is not None and used >= self.max_thinking:
            closed = await self.generation.extend(node, self.tags.forced_end_ids, ())
            return await self.generation.expand(closed, k, spec, one_step)
        cap = spec.max_tokens
        if self.max_thinking is not None:
            cap = min(cap, self.max_thinking - used)
        end = self.tags.format.end
        floor_pending = self.min_thinking is not None and used < self.min_thinking
        stops = (*spec.stop, end) if floor_pending and end not in spec.stop else spec.stop
        thinking_spec = spec.model_copy(update={"max_tokens": cap, "stop": stops})
        ours = cap < spec.max_tokens

        def rewrite(c: Completion) -> Rewritten:
            if c.stop_reason == end:  # the path goes on: to "Wait" if early, else its answer
                return self._early_end(c, used) or Rewritten(c, keep_open=True)
            # cut at the thinking cap, not at the recipe's max_tokens: the path goes on
            return Rewritten(c, ours and c.finish_reason == "length" and len(c.token_ids) >= cap)

        children = await self.generation.expand(node, k, thinking_spec, one_step, rewrite=rewrite)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._go_on(child, spec, one_step)) for child in children]
        return [task.result() for task in tasks]

    async def _go_on(self, child: Node, spec: SamplingSpec, one_step: bool) -> Node:
        """Force what the budget asks after ``child``; without one_step, run to the answer."""
        state = self.generation.graph.state(child.id)
        if child.terminal or state.status != "open":
            return child
        if child.thinking_open:
            used = self.thought(child)
            if self.min_thinking is not None and used < self.min_thinking and _ended_early(child):
                child = await self.generation.extend(child, self.tags.continuation_ids, ())
            elif self.max_thinking is not None and used >= self.max_thinking:
                child = await self.generation.extend(child, self.tags.forced_end_ids, ())
        if one_step or child.terminal:
            return child
        return (await self.expand(child, 1, spec, one_step=False))[0]

    async def think(self, node: Node, max_tokens: int | None, keep_end: bool = False) -> Node:
        """One child of ``node`` thinking on until the model closes its thinking (the end tag
        is left off: the path still thinks; finish reason "stop") or ``max_tokens`` (within
        the thinking cap; "length"). A sample that ends the sequence inside its thinking is
        terminal (no answer). ``keep_end``: the model's end tag stays (the path goes on to its
        answer)."""
        spec = self.generation.spec(False, max_tokens, None, None)
        if self.max_thinking is not None:
            left = max(1, self.max_thinking - self.thought(node))
            spec = spec.model_copy(update={"max_tokens": min(spec.max_tokens, left)})
        end = self.tags.format.end
        spec = spec.model_copy(update={"stop": (*spec.stop, end)})

        def rewrite(c: Completion) -> Rewritten:
            if c.stop_reason == end and not keep_end:
                return self._without_end(c, "stop") or Rewritten(c, keep_open=True)
            return Rewritten(c, keep_open=c.stop_reason == end or c.finish_reason == "length")

        [child] = await self.generation.expand(node, 1, spec, False, rewrite=rewrite)
        return child

    async def force(self, node: Node, what: str) -> Node:
        """Force the end of the thinking (``end``) or the continuation word (``continue``)."""
        ids = self.tags.forced_end_ids if what == "end" else self.tags.continuation_ids
        return await self.generation.extend(node, ids, ())

    def _early_end(self, c: Completion, used: int) -> Rewritten | None:
        """``c`` without its end tag when it closed the thinking before the minimum."""
        if self.min_thinking is None:
            return None
        at = find_ids(c.token_ids, self.tags.end_ids)
        if at < 0 or used + at + len(self.tags.end_ids) >= self.min_thinking:
            return None  # long enough (or the tag merged into other tokens: left as written)
        return self._without_end(c, "length")

    def _without_end(self, c: Completion, finish: FinishReason) -> Rewritten | None:
        """``c`` cut before its end tag, kept open, the tag a pruned node after it (None when
        the tag's ids are not in it: merged into neighbouring tokens, so it cannot be taken
        off by token ids)."""
        at = find_ids(c.token_ids, self.tags.end_ids)
        text_at = c.text.find(self.tags.format.end)  # generation stopped at the first
        if at < 0 or text_at < 0:
            return None
        head = replace(
            c,
            token_ids=c.token_ids[:at],
            text=c.text[:text_at],
            finish_reason=finish,
            stop_reason=_EARLY_END,
            token_logprobs=c.token_logprobs[:at],
            top_logprobs=c.top_logprobs[:at],
            top_token_ids=c.top_token_ids[:at],
        )
        tail = replace(
            c,
            token_ids=c.token_ids[at:],
            text=c.text[text_at:],
            token_logprobs=c.token_logprobs[at:],
            top_logprobs=c.top_logprobs[at:],
            top_token_ids=c.top_token_ids[at:],
        )
        return Rewritten(head, keep_open=True, cut=tail, why=_EARLY_END)


_EARLY_END = "end of thinking replaced (budget forcing)"
"""Why the model's end tag left the path (a pruned node holds it)."""


def _ended_early(node: Node) -> bool:
    return node.finish_reason == "length" and not node.terminal

"""The search port: everything a strategy may see and do, and nothing else.

A strategy is a small program over one :class:`SearchPort`. It reads its tree through a
read-only :class:`TreeView` (nodes, children, paths, finished nodes, a node's value under a
scorer), changes it only through effects (expand, sample, stream, extend, score, compare,
prune), and sees the budget and its rng. It never sees the engine, the graph's storage or the
orchestrator, which implements this port; the scripted engine and real vLLM look the same
from here. The port lives in ``core`` so strategies import nothing from above them, not even
for typing.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from branchwise.core.graph import Node, NodeStatus, Score


@dataclass(frozen=True)
class PromptVariant:
    """A change to the problem's prompt for some whole-solution samples (DivSampling).

    The orchestrator renders it to token ids with the recipe's prompt: ``system`` is added
    to the system prompt (a role, an instruction; in front of a plain template's text),
    ``question`` after the question (a task-specific hint, injected words). The strategy
    names it by ``label``, which the sampled nodes carry for the trace.
    """

    label: str
    system: str = ""
    question: str = ""


class TreeView(Protocol):
    """A read-only view of one search's tree (what ``select`` and the metrics read)."""

    @property
    def problem_id(self) -> str:
        """The problem being searched (for errors a strategy raises)."""
        ...

    @property
    def root(self) -> Node:
        """The prompt."""
        ...

    def node(self, node_id: str) -> Node:
        """The node with this id (ids are paths: ``r``, ``r.0``, ``r.0.3``)."""
        ...

    def children(self, node: Node) -> list[Node]:
        """A node's children in canonical (path) order."""
        ...

    def path(self, node: Node) -> list[Node]:
        """Nodes from the root to ``node`` inclusive."""
        ...

    def terminals(self) -> list[Node]:
        """Finished nodes that are neither pruned nor failed, in canonical order."""
        ...

    def status(self, node: Node) -> NodeStatus:
        """open, terminal, pruned, failed or aborted."""
        ...

    def score_of(self, node: Node, scorer: str) -> Score | None:
        """The scorer's stored verdict on ``node`` (None if it was never asked)."""
        ...

    def value(self, node: Node, scorer: str) -> float | None:
        """``node``'s value under ``scorer`` by the search's one score -> value rule
        (None if never scored or the score failed)."""
        ...

    def solution(self, node: Node) -> str:
        """The text generated on the path to ``node``, without the prompt."""
        ...

    def written_tokens(self, node: Node) -> int:
        """Tokens on the path to ``node`` after the prompt (sampled and forced)."""
        ...

    def __len__(self) -> int:
        """Nodes in the tree, the root included."""
        ...


class BudgetView(Protocol):
    """What a strategy may know of its budget."""

    @property
    def exhausted(self) -> bool:
        """True when no further generation request could be issued."""
        ...


class LendingSeat(Protocol):
    """This problem's seat in the run's lending pool (unspent budget between problems)."""

    async def exchange(self, *, lend: int, want: int) -> int:
        """Hand in ``lend`` units (if positive) and ask for ``want``; returns units granted."""
        ...


class PartialSample(Protocol):
    """What a stream has written so far (cumulative)."""

    @property
    def token_ids(self) -> tuple[int, ...]: ...

    @property
    def text(self) -> str: ...

    @property
    def token_logprobs(self) -> tuple[float, ...]: ...

    @property
    def top_logprobs(self) -> tuple[tuple[float, ...], ...]: ...

    @property
    def top_token_ids(self) -> tuple[tuple[int, ...], ...]: ...


class SampleStream(Protocol):
    """One child being written token by token; use as ``async with`` then ``async for``.

    Leaving the block before the engine finishes aborts the request; on exit the child is
    recorded (:attr:`node`), finished or aborted, and every token written is paid for.
    """

    @property
    def child_id(self) -> str: ...

    @property
    def node(self) -> Node | None:
        """The recorded child, set when the ``async with`` block exits."""
        ...

    @property
    def aborted(self) -> bool:
        """True once recorded as stopped before the engine finished."""
        ...

    def cut(self) -> None:
        """The strategy stops this sample here, whatever the engine has done meanwhile."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[PartialSample]: ...


class SearchPort(TreeView, Protocol):
    """The tree view plus the effects, the budget and the rng of one problem's search."""

    @property
    def rng(self) -> random.Random:
        """The strategy's own random stream (derived from the run seed and the problem)."""
        ...

    @property
    def budget(self) -> BudgetView: ...

    @property
    def max_tokens(self) -> int:
        """The recipe's cap on tokens per sample (``sampling.max_tokens``)."""
        ...

    @property
    def lending(self) -> LendingSeat | None:
        """This problem's seat in the run's lending pool (None when solved on its own)."""
        ...

    async def expand(
        self,
        node: Node,
        k: int,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """``k`` sampled children of ``node``: one step each, or to the end."""
        ...

    async def sample(
        self,
        k: int,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """``k`` whole solutions from the root."""
        ...

    def stream(
        self,
        node: Node,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> SampleStream:
        """One child of ``node`` streamed token by token (abortable)."""
        ...

    async def extend(
        self, node: Node, token_ids: Sequence[int], *, token_logprobs: Sequence[float] = ()
    ) -> Node:
        """A child of ``node`` made of the given (forced, not sampled) tokens."""
        ...

    async def score(self, nodes: Sequence[Node], scorer: str) -> list[Score]:
        """Scores of ``nodes`` by the named scorer; each node is asked at most once."""
        ...

    async def values(self, nodes: Sequence[Node], scorer: str) -> list[float | None]:
        """Scores ``nodes`` and returns their values by the one rule; a node without a value
        is marked failed (it leaves every ranking)."""
        ...

    async def compare(self, pairs: Sequence[tuple[Node, Node]], scorer: str) -> list[Score]:
        """A pairwise scorer's verdict on each pair."""
        ...

    def prune(self, nodes: Sequence[Node]) -> None:
        """Mark nodes pruned; they stay in the tree as part of the trace."""
        ...

    def fail(self, node: Node, reason: str) -> None:
        """Mark a node failed (it never becomes an answer)."""
        ...

    # -- reasoning models (the recipe's `reasoning` format) ---------------------------------

    def thinking_tokens(self, node: Node) -> int:
        """Thinking tokens on the path to ``node`` (forced ones included; 0 without a
        reasoning format)."""
        ...

    async def think(
        self, node: Node, *, max_tokens: int | None = None, keep_end: bool = False
    ) -> Node:
        """One child of ``node`` that thinks on until the model would close its thinking (the
        end tag is left off, so the path still thinks; finish reason "stop") or until
        ``max_tokens`` ("length"). ``keep_end``: a closing end tag stays on the path (it no
        longer thinks). Needs a reasoning format."""
        ...

    async def end_thinking(self, node: Node) -> Node:
        """A forced child closing the thinking (the format's end tag); the answer follows."""
        ...

    async def continue_thinking(self, node: Node) -> Node:
        """A forced child writing the format's continuation word ("Wait"): think on."""
        ...

    def thinking_left(self, node: Node) -> int | None:
        """Thinking tokens the budget still allows on ``node``'s path
        (``budget.max_thinking_tokens``, or a server request's cap); None: no cap."""
        ...

    async def sample_variant(
        self,
        k: int,
        variant: PromptVariant,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """``k`` whole solutions sampled under a variant of the problem's prompt; they are
        children of the root (finished, never expanded further) marked with its label."""
        ...

    # -- log-probabilities of given tokens (engines that score them: vllm, scripted) -------

    async def logprobs_of(self, node: Node, token_ids: Sequence[int]) -> tuple[float, ...]:
        """The policy's log-probability (temperature 1, no top-k/top-p) of each of
        ``token_ids`` written after ``node``'s path: a forced continuation scored, not
        sampled. Costs one engine call and the path plus ``token_ids`` in prompt tokens; adds
        no node. Needs ``Strategy.needs_given_logprobs``."""
        ...

    # -- several policy engines (a recipe's `engines`) ---------------------------------------

    async def expand_with(
        self,
        engine: str,
        node: Node,
        k: int,
        *,
        one_step: bool = True,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> list[Node]:
        """Like ``expand``, with the children written by the recipe's engine named ``engine``
        (a draft/target pair, say); the recipe's own engine writes ``expand``'s."""
        ...

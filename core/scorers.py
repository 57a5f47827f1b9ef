"""The scorer protocol shared by verifiers and reward models.

A scorer sees :class:`Candidate` views of nodes (the path's steps, text, answer, logprobs),
never the graph, and returns one :class:`Score` per candidate, in order. Step-level scorers
fill ``Score.step_values`` with one value per step. The search context memoises scores per
node, so a scorer is never asked twice about the same node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from branchwise.core.graph import Score
from branchwise.core.problem import Problem
from branchwise.core.registry import Registry

if TYPE_CHECKING:
    from branchwise.orchestrator.engines.base import Engine


@dataclass(frozen=True)
class Candidate:
    """What a scorer may look at: one node's whole path from the prompt."""

    node_id: str
    prompt: str
    steps: tuple[str, ...]
    answer: str | None
    terminal: bool
    token_logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[tuple[float, ...], ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.steps)


class ScorerConfig(BaseModel):
    """Common fields of every scorer entry in a recipe's ``scorers`` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="Registered scorer kind (see `branchwise scorers`).")
    name: str | None = Field(None, description="Name strategies use; defaults to the kind.")
    # Fields that change how fast or where, not the scores (see orchestrator.fingerprint).
    plumbing: ClassVar[frozenset[str]] = frozenset()

    @property
    def alias(self) -> str:
        return self.name or self.kind


@dataclass
class ScorerResources:
    """Things a scorer may need to build itself: the policy engine and the recipe folder."""

    engine: Engine | None = None
    base_dir: Path = field(default_factory=Path.cwd)


ConfigT = TypeVar("ConfigT", bound=ScorerConfig, default=ScorerConfig)


class Scorer(ABC, Generic[ConfigT]):
    """Base class of verifiers and reward models (the registry checks subclassing), generic in
    its config: ``class CodeTests(Scorer[CodeTestsConfig])`` reads ``self.config`` typed."""

    config_model: ClassVar[type[ScorerConfig]] = ScorerConfig
    description: ClassVar[str] = ""
    step_level: ClassVar[bool] = False
    # True for scorers that judge only a finished answer (a partial path has none to check).
    needs_answer: ClassVar[bool] = False
    # Logprobs the scorer reads from the engine: 0 the sampled tokens', k the top-k per token
    # (``sampling.logprobs`` must be at least this); None for none.
    needs_logprobs: ClassVar[int | None] = None

    def __init__(self, config: ConfigT, resources: ScorerResources) -> None:
        self.config = config
        self.resources = resources

    @property
    def name(self) -> str:
        return self.config.alias

    @abstractmethod
    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> list[Score]:
        """One score per candidate, in order; raise only if the whole batch failed."""

    async def aclose(self) -> None:
        """Release models or clients; the default has nothing to release."""


class PairwiseScorer(Scorer[ConfigT]):
    """A scorer that also judges pairs of candidates (MBR's judge utility, tournaments).

    ``compare`` returns one :class:`Score` per pair whose value says how much the first
    candidate agrees with (or is as good as) the second, in [0, 1]; ``symmetric`` promises
    that swapping a pair gives the same value, so callers ask each unordered pair once.
    """

    symmetric: ClassVar[bool] = True

    @abstractmethod
    async def compare(
        self, problem: Problem, pairs: Sequence[tuple[Candidate, Candidate]]
    ) -> list[Score]:
        """One score per pair, in order; raise only if the whole batch failed."""


# The built-in verifiers and reward models, by import path: each is imported only when a
# recipe (or `branchwise scorers`) names it, and this module imports none of them.
BUILTIN_SCORERS: dict[str, str] = {
    "reference_answer": "branchwise.verifiers.reference:ReferenceAnswer",
    "reference_steps": "branchwise.verifiers.reference:ReferenceSteps",
    "agreement_judge": "branchwise.verifiers.agreement_judge:AgreementJudge",
    "mean_logprob": "branchwise.rewards.intrinsic:MeanLogprob",
    "perplexity": "branchwise.rewards.intrinsic:Perplexity",
    "self_certainty": "branchwise.rewards.intrinsic:SelfCertainty",
    "token_entropy": "branchwise.rewards.intrinsic:TokenEntropy",
    "group_confidence": "branchwise.rewards.intrinsic:GroupConfidence",
    "answer_equivalence": "branchwise.verifiers.equivalence:AnswerEquivalence",
    "arithmetic_steps": "branchwise.verifiers.arithmetic_scorer:ArithmeticSteps",
    "code_tests": "branchwise.verifiers.code_execution:CodeTests",
    "judge_pointwise": "branchwise.verifiers.judges:PointwiseJudge",
    "judge_pairwise": "branchwise.verifiers.judges:PairwiseJudge",
    "judge_tournament": "branchwise.verifiers.judges:TournamentJudge",
    "self_verification": "branchwise.verifiers.self_verification:SelfVerification",
    "prm": "branchwise.rewards.prm:ProcessRewardModel",
    "orm": "branchwise.rewards.prm:OutcomeRewardModel",
}

SCORERS: Registry[Scorer[Any]] = Registry(
    "scorer", Scorer, group="branchwise.scorers", builtins=BUILTIN_SCORERS
)

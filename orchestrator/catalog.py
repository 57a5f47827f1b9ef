"""The built-in strategies and scorers, registered lazily by import path.

Nothing here is imported until a recipe (or `branchwise strategies`) names it.
"""

from __future__ import annotations

from orchestrator.scoring import SCORERS
from strategies.base import STRATEGIES

_BUILTIN_STRATEGIES = {
    "best_of_n": "strategies.best_of_n:BestOfN",
    "self_consistency": "strategies.self_consistency:SelfConsistency",
    "adaptive_self_consistency": "strategies.adaptive_consistency:AdaptiveSelfConsistency",
    "deepconf": "strategies.deepconf:DeepConf",
    "mbr": "strategies.mbr:MBR",
    "first_finish": "strategies.first_finish:FirstFinish",
    "entropy_branching": "strategies.entropy_branching:EntropyBranching",
    "beam_search": "strategies.beam_search:BeamSearch",
    "dvts": "strategies.dvts:DVTS",
    "mcts": "strategies.mcts:MCTS",
    "ab_mcts": "strategies.ab_mcts:ABMCTS",
    "particle_filter": "strategies.particle_filter:ParticleFilter",
    "a_star": "strategies.a_star:AStar",
}

_BUILTIN_SCORERS = {
    "reference_answer": "verifiers.reference:ReferenceAnswer",
    "reference_steps": "verifiers.reference:ReferenceSteps",
    "agreement_judge": "verifiers.agreement_judge:AgreementJudge",
    "mean_logprob": "rewards.intrinsic:MeanLogprob",
    "perplexity": "rewards.intrinsic:Perplexity",
    "self_certainty": "rewards.intrinsic:SelfCertainty",
    "token_entropy": "rewards.intrinsic:TokenEntropy",
    "group_confidence": "rewards.intrinsic:GroupConfidence",
    "answer_equivalence": "verifiers.equivalence:AnswerEquivalence",
    "arithmetic_steps": "verifiers.arithmetic_scorer:ArithmeticSteps",
    "code_tests": "verifiers.code_execution:CodeTests",
    "judge_pointwise": "verifiers.judges:PointwiseJudge",
    "judge_pairwise": "verifiers.judges:PairwiseJudge",
    "judge_tournament": "verifiers.judges:TournamentJudge",
    "prm": "rewards.prm:ProcessRewardModel",
    "orm": "rewards.prm:OutcomeRewardModel",
}


def register_builtins() -> None:
    """Idempotently add the built-ins to the registries."""
    for name, target in _BUILTIN_STRATEGIES.items():
        if name not in STRATEGIES.names():
            STRATEGIES.register(name, target)
    for name, target in _BUILTIN_SCORERS.items():
        if name not in SCORERS.names():
            SCORERS.register(name, target)


register_builtins()

"""DivSampling: a perturbed prompt per sample, so the samples do not all repeat one mistake."""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from pydantic import Field

from branchwise.core.port import PromptVariant, SearchPort
from branchwise.strategies.base import SearchResult, Strategy, StrategyConfig
from branchwise.strategies.sampling import gathered

Perturbation = Literal["none", "role", "instruction", "random_words", "approach"]

ROLES = (
    "You are a careful mathematician who double-checks every step.",
    "You are a patient teacher explaining the solution to a student.",
    "You are a competition solver who looks for the shortest route.",
    "You are an accountant who keeps exact track of every quantity.",
)
INSTRUCTIONS = (
    "Write down what is known before computing anything.",
    "Break the problem into small parts and solve them one at a time.",
    "Check the result against the question before giving the answer.",
    "Keep each step short and state each intermediate value.",
)
APPROACHES = (
    "Solve it in a different way from the most obvious one.",
    "Try working from the quantity that is asked for back to what is given.",
    "Estimate the answer first, then compute it exactly.",
    "Track each quantity in a small table as it changes.",
)
WORDS = (
    "river", "lantern", "copper", "meadow", "puzzle", "orbit", "velvet", "harbor", "signal",
    "thistle", "canyon", "marble", "echo", "garnet", "quill", "summit", "tundra", "willow",
    "ember", "falcon", "glacier", "hollow", "island", "juniper", "kettle", "lagoon", "mosaic",
    "nectar", "oasis", "prism", "quartz", "ripple",
)  # fmt: skip


class DivSamplingConfig(StrategyConfig):
    name: Literal["div_sampling"] = "div_sampling"
    n: int = Field(16, ge=1, description="Solutions sampled.")
    perturbations: tuple[Perturbation, ...] = Field(
        ("role", "instruction", "random_words", "approach"),
        min_length=1,
        description="Kinds drawn from, uniformly, for each sample: none (the plain prompt), "
        "role and instruction (task-agnostic, added to the system prompt), random_words "
        "(task-agnostic, injected after the question), approach (task-specific: a hint to "
        "solve it another way, after the question).",
    )
    roles: tuple[str, ...] = Field(ROLES, min_length=1, description="Role texts drawn from.")
    instructions: tuple[str, ...] = Field(
        INSTRUCTIONS, min_length=1, description="Instruction texts drawn from."
    )
    approaches: tuple[str, ...] = Field(
        APPROACHES, min_length=1, description="Task-specific hints drawn from."
    )
    random_words: int = Field(
        4, ge=1, le=len(WORDS), description="Words injected by a random_words perturbation."
    )


class DivSampling(Strategy[DivSamplingConfig]):
    """DivSampling (Wang et al. 2025, "Diversified Sampling Improves Scaling LLM Inference").

    Each of the ``n`` samples gets its own prompt perturbation, drawn with the search's rng:
    a kind from ``perturbations``, then a text of that kind (a role or an instruction in the
    system prompt; random words or a task-specific ``approaches`` hint after the question).
    The orchestrator renders each variant to token ids (``port.sample_variant``); samples
    sharing a variant go in one request. The finished samples take a majority vote; the
    paper's claim is on coverage (pass@k), which the metrics report. The paper's variants
    that need extra model calls (an injected idea, a rephrased question) are not built.
    Cost: ``n`` samples, prompts a few tokens longer; no scorer calls. Knobs: ``n``,
    ``perturbations``, ``roles``, ``instructions``, ``approaches``, ``random_words``.
    """

    config_model = DivSamplingConfig
    description = "A perturbed prompt per sample (role, instruction, random words, approach)."

    async def search(self, port: SearchPort) -> SearchResult:
        groups: dict[PromptVariant | None, int] = {}
        for _ in range(self.config.n):
            variant = self._draw(port.rng)
            groups[variant] = groups.get(variant, 0) + 1
        outcomes = await asyncio.gather(
            *(
                port.sample(k) if variant is None else port.sample_variant(k, variant)
                for variant, k in groups.items()
            ),
            return_exceptions=True,
        )
        nodes = gathered(outcomes)
        picked = self.select(port)
        detail = {**picked.detail, "samples": len(nodes), "variants": len(groups)}
        return SearchResult(picked.answer, picked.node_id, detail)

    def _draw(self, rng: random.Random) -> PromptVariant | None:
        cfg = self.config
        kind = rng.choice(cfg.perturbations)
        if kind == "none":
            return None
        if kind == "role":
            index = rng.randrange(len(cfg.roles))
            return PromptVariant(f"role:{index}", system=cfg.roles[index])
        if kind == "instruction":
            index = rng.randrange(len(cfg.instructions))
            return PromptVariant(f"instruction:{index}", system=cfg.instructions[index])
        if kind == "approach":
            index = rng.randrange(len(cfg.approaches))
            return PromptVariant(f"approach:{index}", question=cfg.approaches[index])
        words = " ".join(rng.sample(WORDS, cfg.random_words))
        return PromptVariant(f"random_words:{words}", question=words)

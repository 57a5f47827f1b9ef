"""Reward-model scorers: the batching queue, step-prefix reuse, per-node failures, torch backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from branchwise.core.problem import Problem
from branchwise.core.scorers import Candidate, ScorerResources
from branchwise.rewards.batching import MicroBatcher
from branchwise.rewards.prm import OutcomeRewardModel, ProcessRewardModel, RewardModelConfig
from tests.tiny_prm import make_tiny_prm

PROBLEM = Problem(id="p", question="Mia has 7 pens.")
PROMPT = "Mia has 7 pens.\n"


class FakeBackend:
    """Character ids; the 'correct' logit at a position is a fixed function of the prefix."""

    name = "fake"

    def __init__(self, max_length: int | None = None, delay: float = 0.0) -> None:
        self.max_length = max_length
        self.delay = delay
        self.calls: list[int] = []
        self.sequences: list[list[int]] = []

    async def start(self) -> None:
        return None

    async def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]

    async def logits_at(self, items: Sequence[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        await asyncio.sleep(self.delay)
        self.calls.append(len(items))
        self.sequences.extend(ids for ids, _ in items)
        return [
            np.array([[0.0, (sum(ids[: p + 1]) % 97) / 97] for p in positions])
            for ids, positions in items
        ]

    async def close(self) -> None:
        return None


def prm(backend: object, cls: type = ProcessRewardModel, **config: object) -> ProcessRewardModel:
    values = {"kind": "prm", "model": "fake", "activation": "none", **config}
    scorer = cls(RewardModelConfig(**values), ScorerResources())
    scorer.backend = backend  # type: ignore[assignment]
    return scorer  # type: ignore[no-any-return]


def cand(*steps: str, node: str = "r.0") -> Candidate:
    return Candidate(node_id=node, prompt=PROMPT, steps=steps, answer=None, terminal=False)


def expected(steps: Sequence[str]) -> list[float]:
    ids = [1] + [ord(c) for c in PROMPT]
    out = []
    for step in steps:
        ids += [ord(c) for c in step]
        out.append((sum(ids) % 97) / 97)
    return out


def test_micro_batcher_merges_concurrent_callers() -> None:
    sizes: list[int] = []

    async def double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = MicroBatcher(double, max_batch=8, max_wait_ms=20)
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(20))))

    assert asyncio.run(main()) == [2 * i for i in range(20)]
    assert sizes == [8, 8, 4]


def test_micro_batcher_gives_every_caller_the_batch_failure() -> None:
    async def broken(items: list[int]) -> list[int]:
        raise RuntimeError("model died")

    async def main() -> list[object]:
        batcher: MicroBatcher[int, int] = MicroBatcher(broken, max_batch=4, max_wait_ms=1)
        return await batcher.submit_many([1, 2, 3])

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)


def test_step_values_are_read_at_each_step_end() -> None:
    scorer = prm(FakeBackend())
    steps = ("7+15=22\n", "22-4=18\n", "Answer: 18")
    (score,) = asyncio.run(scorer.score(PROBLEM, [cand(*steps)]))
    assert score.step_values == pytest.approx(expected(steps))
    assert score.value == pytest.approx(min(expected(steps)))  # default aggregation: min


def test_a_child_reuses_its_parents_steps_and_duplicates_send_nothing() -> None:
    backend = FakeBackend()
    scorer = prm(backend)
    parent = cand("7+15=22\n", "22-4=18\n")
    child = cand("7+15=22\n", "22-4=18\n", "18*3=54\n", node="r.0.0")
    asyncio.run(scorer.score(PROBLEM, [parent]))
    assert scorer.stats.steps_scored == 2
    (score,) = asyncio.run(scorer.score(PROBLEM, [child]))
    assert scorer.stats.steps_scored == 3 and scorer.stats.steps_reused == 2
    assert score.step_values == pytest.approx(expected(child.steps))
    calls = len(backend.calls)
    asyncio.run(scorer.score(PROBLEM, [cand(*child.steps, node="r.9")]))
    assert len(backend.calls) == calls  # every prefix cached: no model call at all


def test_identical_paths_in_flight_share_one_request_and_batches_merge() -> None:
    backend = FakeBackend(delay=0.01)
    scorer = prm(backend, max_wait_ms=20)
    same = [cand("1+1=2\n", node=f"r.{i}") for i in range(5)]
    other = [cand(f"1+{i}={1 + i}\n", node=f"r.{10 + i}") for i in range(2, 6)]

    async def main() -> None:
        await asyncio.gather(scorer.score(PROBLEM, same), scorer.score(PROBLEM, other))

    asyncio.run(main())
    assert backend.calls == [5]  # one batch: one shared request + four distinct ones


def test_a_too_long_path_fails_alone() -> None:
    scorer = prm(FakeBackend(max_length=30))
    short, long = cand("1+1=2\n"), cand("1+1=2\n" * 5, node="r.1")
    ok, failed = asyncio.run(scorer.score(PROBLEM, [short, long]))
    assert ok.ok and not failed.ok and "tokens" in (failed.error or "")


def test_a_slow_model_times_out_per_node() -> None:
    scorer = prm(FakeBackend(delay=0.5), timeout_seconds=0.05)
    (score,) = asyncio.run(scorer.score(PROBLEM, [cand("1+1=2\n")]))
    assert not score.ok and "timed out" in (score.error or "")


def test_orm_reads_only_the_last_token() -> None:
    scorer = prm(FakeBackend(), OutcomeRewardModel)
    steps = ("1+1=2\n", "Answer: 2")
    (score,) = asyncio.run(scorer.score(PROBLEM, [cand(*steps)]))
    assert score.step_values == () and score.value == pytest.approx(expected(steps)[-1])


def test_http_backend_needs_a_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        RewardModelConfig(kind="prm", model="m", backend="http")


def test_torch_backend_matches_a_plain_forward_pass(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder = make_tiny_prm(tmp_path / "prm")
    config = RewardModelConfig(kind="prm", model=str(folder), backend="torch", threads=1)
    scorer = ProcessRewardModel(config, ScorerResources())
    paths = [cand("7+15=22\n", "22-4=18\n"), cand("7+1=8\n", "Answer: 8", node="r.1")]
    scores = asyncio.run(scorer.score(PROBLEM, paths))

    model = AutoModelForTokenClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for path, score in zip(paths, scores, strict=True):
        text = PROMPT + "".join(path.steps)
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            probs = model(input_ids=ids).logits.softmax(-1)[0, :, 1]
        ends, at = [], len(PROMPT)
        for step in path.steps:
            at += len(step)
            ends.append(at)  # BOS shifts positions by one: the step's last char is at `at`
        assert score.step_values == pytest.approx([float(probs[e]) for e in ends], abs=1e-5)
    assert len({round(v, 3) for s in scores for v in s.step_values}) > 1  # scores spread
    asyncio.run(scorer.aclose())

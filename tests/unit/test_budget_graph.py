"""Budgets, usage accounting and the search graph's bookkeeping."""

from __future__ import annotations

import asyncio

import pytest

from branchwise.core.errors import BudgetExhausted
from branchwise.core.graph import Node, SearchGraph
from branchwise.orchestrator.engines.scripted import ScriptedEngine
from branchwise.orchestrator.ledger import Budget, Ledger, Reservation
from branchwise.orchestrator.runner import Orchestrator
from tests.conftest import make_problem, scripted_recipe, teach


def test_request_max_tokens_is_clamped_to_what_is_left() -> None:
    tracker = Ledger(Budget(max_generated_tokens=100))
    assert tracker.check_request(n=4, max_tokens=64, new_nodes=4) == 25
    held = tracker.hold(per_sample=25, tokens=100)
    with pytest.raises(BudgetExhausted):
        tracker.check_request(n=1, max_tokens=1, new_nodes=1)
    held.settle(generated=40, prompt=10, cached=0, nodes=4)
    assert tracker.generated_tokens_left() == 60
    assert tracker.usage.generated_tokens == 40 and tracker.usage.nodes == 4


def test_engine_call_and_node_budgets() -> None:
    tracker = Ledger(Budget(max_engine_calls=1, max_nodes=3))
    tracker.check_request(n=3, max_tokens=8, new_nodes=3)
    with pytest.raises(BudgetExhausted):
        tracker.check_request(n=4, max_tokens=8, new_nodes=4)
    tracker.hold(per_sample=0, tokens=0)
    assert tracker.exhausted


def test_graph_paths_children_and_trace() -> None:
    graph = SearchGraph("p", (1, 2), "Q\n")
    for i, cid in enumerate(graph.reserve_child_ids("r", 11)):
        graph.add_child(Node(id=cid, parent_id="r", depth=1, token_ids=(i,), text=f"s{i}\n"))
    graph.add_child(
        Node(
            id="r.10.0",
            parent_id="r.10",
            depth=2,
            token_ids=(9,),
            text="end",
            terminal=True,
            answer="3",
        )
    )
    assert [n.id for n in graph.children("r")][-2:] == ["r.9", "r.10"]
    assert graph.full_token_ids("r.10.0") == (1, 2, 10, 9)
    assert graph.solution_text("r.10.0") == "s10\nend"
    assert [n.id for n in graph.terminals()] == ["r.10.0"]
    graph.mark("r.10.0", "pruned")
    assert graph.terminals() == []
    trace = graph.to_dict()
    assert len(trace["nodes"]) == 13  # type: ignore[arg-type]
    assert graph.is_acyclic()


def test_usage_matches_the_graph_and_reports_cache_hits() -> None:
    recipe = scripted_recipe({"name": "self_consistency", "n": 4, "batch": 2})
    problem = make_problem(0)

    async def go() -> None:
        engine = ScriptedEngine()
        teach(engine, [problem])
        async with Orchestrator(recipe, engine=engine) as orchestrator:
            result = await orchestrator.solve(problem)
        assert result.graph is not None
        assert result.usage["engine_calls"] == 2
        assert result.usage["nodes"] == 4
        generated = sum(len(n.token_ids) for n in result.graph.nodes() if n.parent_id)
        assert result.usage["generated_tokens"] == generated
        # the second request repeats the prompt: its full blocks are cache hits
        assert result.usage["cached_prompt_tokens"] > 0

    asyncio.run(go())


def test_a_request_cut_by_reservations_waits_and_waiters_go_in_key_order() -> None:
    async def go() -> list[tuple[str, int]]:
        tracker = Ledger(Budget(max_generated_tokens=20))
        first = await tracker.admit(n=1, max_tokens=16, new_nodes=1, prompt_tokens=1, key="r.0")
        assert first.per_sample == 16
        held = {}
        decided: list[tuple[str, int]] = []

        async def request(key: str) -> None:
            got = await tracker.admit(n=1, max_tokens=8, new_nodes=1, prompt_tokens=1, key=key)
            held[key] = got
            decided.append((key, got.per_sample))

        # "r.2" asks first, but both only fit once r.0's unused reservation is back
        waiting = [asyncio.create_task(request(k)) for k in ("r.2", "r.1")]
        await asyncio.sleep(0)
        assert decided == []
        first.settle(generated=10, prompt=1, cached=0, nodes=1)
        await asyncio.sleep(0)  # r.1 is admitted in full; r.2 now waits for r.1
        assert decided == [("r.1", 8)]
        held["r.1"].settle(generated=6, prompt=1, cached=0, nodes=1)
        await asyncio.gather(*waiting)
        return decided

    assert asyncio.run(go()) == [("r.1", 8), ("r.2", 4)]


def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    async def go() -> int:
        tracker = Ledger(Budget(max_generated_tokens=20))
        first = await tracker.admit(n=1, max_tokens=16, new_nodes=1, prompt_tokens=1, key="r.0")

        def ask(key: str) -> asyncio.Task[Reservation]:
            return asyncio.create_task(
                tracker.admit(n=1, max_tokens=8, new_nodes=1, prompt_tokens=1, key=key)
            )

        woken, next_in_line, never = ask("r.1"), ask("r.2"), ask("r.3")
        await asyncio.sleep(0)
        never.cancel()  # cancelled while waiting: simply leaves the queue
        first.settle(generated=10, prompt=1, cached=0, nodes=1)
        woken.cancel()  # its turn came, but it is cancelled before it could use it
        tokens = (await next_in_line).per_sample
        for task in (woken, never):
            with pytest.raises(asyncio.CancelledError):
                await task
        return tokens

    assert asyncio.run(go()) == 8


def test_a_refusal_waiting_cannot_cure_is_immediate_and_waiters_go_in_node_order() -> None:
    async def go() -> list[str]:
        tracker = Ledger(Budget(max_generated_tokens=25, max_engine_calls=4))
        first = await tracker.admit(n=1, max_tokens=20, new_nodes=1, prompt_tokens=1, key="r.0")
        order: list[str] = []

        async def request(key: str) -> None:
            got = await tracker.admit(n=1, max_tokens=8, new_nodes=1, prompt_tokens=1, key=key)
            order.append(key)
            got.settle(generated=1, prompt=1, cached=0, nodes=1)

        waiting = [asyncio.create_task(request(k)) for k in ("r.10", "r.2", "r.3.1")]
        await asyncio.sleep(0)
        assert order == []
        first.settle(generated=2, prompt=1, cached=0, nodes=1)
        await asyncio.gather(*waiting)
        # the engine-call budget is spent: no amount of waiting helps, so no waiting
        with pytest.raises(BudgetExhausted, match="engine call"):
            await tracker.admit(n=1, max_tokens=8, new_nodes=1, prompt_tokens=1, key="r.4")
        return order

    assert asyncio.run(go()) == ["r.2", "r.3.1", "r.10"]


def test_a_waiter_cancelled_as_the_budget_frees_up_does_not_stall_the_problem() -> None:
    from branchwise.orchestrator.engines.scripted import ReferencePolicy, ScriptedEngine
    from branchwise.orchestrator.engines.types import GenerationRequest, GenerationResult
    from tests.conftest import make_problem
    from tests.unit.sampling_support import make_context

    class GatedEngine(ScriptedEngine):
        gate = asyncio.Event()

        async def generate(self, request: GenerationRequest) -> GenerationResult:
            result = await super().generate(request)
            await self.gate.wait()
            return result

    async def go() -> None:
        engine = GatedEngine(ReferencePolicy({}, error_rate=0.0))
        GatedEngine.gate = asyncio.Event()
        ctx = await make_context(engine, make_problem(0), budget=Budget(max_generated_tokens=100))
        first = asyncio.create_task(ctx.expand(ctx.root, 1, max_tokens=64))  # fits in full
        await asyncio.sleep(0.01)
        cut = asyncio.create_task(ctx.expand(ctx.root, 1, max_tokens=64))  # waits for `first`
        await asyncio.sleep(0)
        GatedEngine.gate.set()  # `first` completes in the same turn as `cut` is cancelled
        cut.cancel()
        done, cancelled = await asyncio.gather(first, cut, return_exceptions=True)
        assert isinstance(cancelled, asyncio.CancelledError) and not isinstance(done, Exception)
        tracker = ctx.budget
        assert tracker._reserved_tokens == 0 and tracker._order.in_flight == 0
        await asyncio.wait_for(ctx.expand(ctx.root, 1, max_tokens=8), 2)  # no stall

    asyncio.run(go())


def test_a_reservation_gives_everything_back_unless_settled() -> None:
    tracker = Ledger(Budget(max_generated_tokens=50, max_nodes=4))
    with pytest.raises(RuntimeError), tracker.hold(per_sample=20, tokens=40, nodes=2) as held:
        assert tracker.generated_tokens_left() == 10
        raise RuntimeError("the request failed")
    assert held.settled and tracker.generated_tokens_left() == 50
    assert tracker.usage.aborted_requests == 1 and tracker.usage.engine_calls == 1
    with tracker.hold(per_sample=20, tokens=40, nodes=2) as held:
        held.settle(generated=15, nodes=2)
    assert tracker.generated_tokens_left() == 35 and tracker.usage.nodes == 2
    assert tracker.usage.aborted_requests == 1
    with pytest.raises(RuntimeError, match="once"):
        held.settle(generated=1)
    with tracker.reserve_nodes(2) as forced:  # forced tokens: nodes only, no engine call
        with pytest.raises(BudgetExhausted):
            tracker.reserve_nodes(1)
        forced.settle(nodes=2)
    assert tracker.usage.nodes == 4 and tracker.usage.engine_calls == 2


def test_the_budget_tracker_is_the_only_writer_of_usage() -> None:
    import ast

    from tests.conftest import REPO

    writers = set()
    for package in ("core", "orchestrator", "strategies", "verifiers", "rewards"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Attribute)
                        and target.value.attr == "usage"
                    ):
                        writers.add(str(path.relative_to(REPO)))
    assert writers == {"orchestrator/ledger.py"}

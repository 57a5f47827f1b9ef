"""Runs in the references environment: treequest's own AB-MCTS-A and AB-MCTS-M on the cases
the equivalence tests name, printing the statistics as JSON.

    python treequest_reference.py SPEC.json   (SPEC: {"decisions": [...], "searches": [...]})

Decisions: a node whose children's subtree scores are given; treequest's AB-MCTS-M fits its
model (NUTS) ``fits`` times and, per fit, makes ``per_fit`` decisions with its own decision
rule (pruning included) from that fit's predictive draws. Searches: treequest's algorithm
grows a synthetic tree (synthetic_trees.py) for ``iterations`` steps, once per seed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_trees import SHAPES, score, tree_summary


def decision_case(groups: list[list[float]], fits: int, per_fit: int, seed: int) -> dict:
    from treequest.algos.ab_mcts_m.algo import ABMCTSM
    from treequest.algos.ab_mcts_m.pymc_interface import Observation

    algo = ABMCTSM(max_process_workers=1)
    state = algo.init_tree()
    root = state.tree.root
    for group in groups:
        child = state.tree.add_node(("s", group[0]), root)
        nodes = [child]
        for y in group[1:]:  # the rest of the subtree: a chain below the child
            nodes.append(state.tree.add_node(("s", y), nodes[-1]))
        for node in nodes:
            state.all_observations[node.expand_idx] = Observation(
                reward=node.score, action="a", node_expand_idx=node.expand_idx
            )
    observations = Observation.collect_all_observations_of_descendant(root, state.all_observations)
    interface = algo.pymc_interface
    fit_score = type(interface).calculate_score
    fitted = []
    np.random.seed(seed)
    random.seed(seed)
    for _ in range(fits):
        interface.get_score = lambda arr: arr.values.flatten()  # keep every predictive draw
        arrays = fit_score(interface, observations, None)
        interface.get_score = lambda arr: float(np.random.choice(arr.values.flatten()))
        interface.calculate_score = lambda obs, action, arrays=arrays: {
            k: float(np.random.choice(v)) for k, v in arrays.items()
        }
        interface._select_best_action = lambda *a, **k: "a"
        counts = {"gen": 0, **{str(j): 0 for j in range(len(groups))}}
        fitted.append(counts)
        for _ in range(per_fit):
            pick = interface.run(observations, ["a"], root, list(state.all_observations.values()))
            counts["gen" if isinstance(pick, str) else str(pick)] += 1
        del interface.calculate_score, interface._select_best_action
    return fitted


def search_case(algorithm: str, shape_name: str, iterations: int, seeds: list[int]) -> list[dict]:
    from treequest import ABMCTSA, ABMCTSM

    shape = SHAPES[shape_name]
    out = []
    for seed in seeds:
        np.random.seed(seed)
        random.seed(seed)
        algo = ABMCTSA() if algorithm == "ab_mcts" else ABMCTSM(max_process_workers=1)
        kids: dict[tuple[int, ...], int] = {}
        made: list[tuple[tuple[int, ...], float]] = []

        def generate(
            parent: tuple[int, ...] | None,
            kids: dict[tuple[int, ...], int] = kids,
            made: list[tuple[tuple[int, ...], float]] = made,
            seed: int = seed,
        ) -> tuple[tuple[int, ...], float]:
            parent = parent or ()
            index = kids.get(parent, 0)
            kids[parent] = index + 1
            path = (*parent, index)
            made.append((path, score(shape, seed, path)))
            return path, made[-1][1]

        state = algo.init_tree()
        for _ in range(iterations):
            state = algo.step(state, {"a": generate}, inplace=True)
        ids = {path: i for i, (path, _) in enumerate(made)}
        parents = [ids.get(path[:-1], -1) for path, _ in made]
        out.append(tree_summary(parents, [s for _, s in made]))
    return out


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    import treequest

    result: dict = {
        "treequest": treequest.__version__ if hasattr(treequest, "__version__") else "",
        "decisions": [],
        "searches": [],
    }
    for case in spec.get("decisions", []):
        counts = decision_case(case["groups"], case["fits"], case["per_fit"], case["seed"])
        result["decisions"].append({**case, "counts": counts})
        print(json.dumps(result["decisions"][-1]), file=sys.stderr, flush=True)
    for case in spec.get("searches", []):
        runs = search_case(case["algorithm"], case["shape"], case["iterations"], case["seeds"])
        result["searches"].append({**case, "runs": runs})
        print(case["algorithm"], case["shape"], "done", file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

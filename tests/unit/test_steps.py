"""The step rule: where a step ends, on character- and BPE-shaped texts alike."""

from __future__ import annotations

import pytest

from branchwise.orchestrator.steps import path_steps, split_steps, split_text


def test_split_text_keeps_every_character() -> None:
    text = "7 + 15 = 22.\n\n22 - 4 = 18.\n\n\nThe answer is \\boxed{18}."
    pieces = split_text(text, "\n\n")
    assert "".join(pieces) == text
    # the line break after the delimiter goes with it, as a merged ".\n\n\n" token would
    assert pieces == ["7 + 15 = 22.\n\n", "22 - 4 = 18.\n\n\n", "The answer is \\boxed{18}."]


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("a.\n\nb.\n\n", ("a.\n\n", "b.\n\n")),
        ("\n\na.\n\nb.", ("\n\na.\n\n", "b.")),  # a blank opening joins the first step
        ("a.\n\n \n\nb.", ("a.\n\n \n\n", "b.")),  # blank segments never count as steps
        ("   \n\n", ()),
        ("7+15=22\n22-4=18\nAnswer: 18", ("7+15=22\n", "22-4=18\n", "Answer: 18")),
    ],
)
def test_split_steps(text: str, steps: tuple[str, ...]) -> None:
    assert split_steps(text, "\n\n" if "\n\n" in text or not text.strip() else "\n") == steps


def test_a_node_that_stopped_at_the_delimiter_is_one_step_even_past_it() -> None:
    """The merged token carried text past the delimiter: it stays in the node's step."""
    segments = [("7 + 15 = 22.\n\nThe", True), (" answer is \\boxed{22}.", False)]
    assert path_steps(segments, "\n\n") == ("7 + 15 = 22.\n\nThe", " answer is \\boxed{22}.")


def test_forced_token_nodes_do_not_end_steps() -> None:
    """Token-level branching splits a step into several nodes; they form one step."""
    segments = [("7 + 1", False), ("5 = 22.\n\n", True), ("22 - ", False), ("4 = 18.", False)]
    assert path_steps(segments, "\n\n") == ("7 + 15 = 22.\n\n", "22 - 4 = 18.")


def test_a_whole_solution_node_is_split_inside() -> None:
    segments = [("a.\n\n", True), ("b.\n\nc.\n\n\nd.", False)]
    assert path_steps(segments, "\n\n") == ("a.\n\n", "b.\n\n", "c.\n\n\n", "d.")

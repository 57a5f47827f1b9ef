"""Where the bundled testbed lives: in the installed package, or in the checkout.

The wheel carries the demo recipe, the testbed policy and PRM and the eval problems as data
under ``branchwise/examples/`` (the repository's own layout), so the recipe's relative paths
resolve in both places and ``branchwise demo`` needs nothing but the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from branchwise.core.errors import RecipeError

_CHECKOUT_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def examples_folder() -> Path:
    """The ``examples`` folder that holds the bundled recipes and testbed."""
    try:
        packaged = resources.files("branchwise.examples.recipes") / "demo.yaml"
    except ModuleNotFoundError:  # a checkout on PYTHONPATH, never installed
        packaged = None
    if packaged is not None and packaged.is_file():
        return Path(str(packaged)).parents[1]
    if (_CHECKOUT_EXAMPLES / "recipes" / "demo.yaml").is_file():
        return _CHECKOUT_EXAMPLES
    raise RecipeError("the bundled testbed is missing: reinstall branchwise (the wheel ships it)")


def demo_recipe() -> Path:
    """The demo recipe (self-consistency on the bundled testbed policy)."""
    return examples_folder() / "recipes" / "demo.yaml"

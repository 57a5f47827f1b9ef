"""The one exception hierarchy of Branchwise.

::

    BranchwiseError
    ├── RecipeError          a recipe or config is invalid (names the file and key path)
    ├── RegistryError        an unknown or duplicate strategy / scorer / engine name
    ├── DatasetError         a dataset line cannot be read (names file and line)
    ├── StoreError           a results folder cannot be opened, is damaged, or is not this run's
    │   └── StoreFault       storing a result failed mid-run (disk full, I/O, unencodable text)
    ├── EngineError          the engine failed a request
    │   └── EngineTimeout    the engine did not answer in time
    ├── ScorerError          a scorer failed on a node (recorded on the node, search goes on)
    └── BudgetExhausted      a strategy asked for more than its budget allows

Errors raised while searching a problem carry the problem id and, where known, the node id.
"""

from __future__ import annotations


class BranchwiseError(Exception):
    """Base class of every error Branchwise raises on purpose."""

    def __init__(
        self, message: str, *, problem_id: str | None = None, node_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.problem_id = problem_id
        self.node_id = node_id

    def __str__(self) -> str:
        where = [
            f"{label}={value}"
            for label, value in (("problem", self.problem_id), ("node", self.node_id))
            if value is not None
        ]
        base = super().__str__()
        return f"{base} [{', '.join(where)}]" if where else base


class RecipeError(BranchwiseError):
    """A recipe or component config failed validation."""


class RegistryError(BranchwiseError):
    """A name is not registered, or registered twice."""


class DatasetError(BranchwiseError):
    """A dataset file or line could not be read."""


class StoreError(BranchwiseError):
    """A results store cannot be opened, is damaged, or does not fit the run being resumed."""


class StoreFault(StoreError):
    """Writing to the results store failed while a run went on (disk full, an I/O or
    database error, text SQLite cannot hold); what was committed before it is kept."""


class EngineError(BranchwiseError):
    """The engine could not complete a generation request."""


class EngineTimeout(EngineError):
    """The engine did not answer within the allowed time."""


class ScorerError(BranchwiseError):
    """A scorer failed; the failure is recorded on the node it was scoring."""


class BudgetExhausted(BranchwiseError):
    """The search budget does not allow the requested work."""

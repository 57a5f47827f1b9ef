"""Name registries for the extension points (strategies, scorers, engines).

Entries may be classes or lazy ``"module:attr"`` strings, so a torch-heavy scorer is imported
only when a recipe names it. Third-party packages add entries through the registry's
entry-point group: ``branchwise.strategies``, ``branchwise.scorers``, ``branchwise.engines``
(an entry ``name = "package.module:Class"``). An entry point never replaces a name already
registered; a registry reads its group once, on first use.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from branchwise.core.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to subclasses of ``base``; rejects duplicates and suggests near names."""

    def __init__(
        self, kind: str, base: type[Any], *, group: str, builtins: Mapping[str, str] | None = None
    ) -> None:
        """``kind``: the singular name used in messages; ``group``: the entry-point group;
        ``builtins``: the package's own entries, as lazy ``"module:attr"`` strings."""
        self.kind = kind
        self.base = base
        self.group = group
        self._entries: dict[str, type[T] | str] = dict(builtins or {})
        self._plugins_loaded = False

    def register(self, name: str, target: type[T] | str) -> None:
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if not isinstance(target, str):
            self._check(name, target)
        self._entries[name] = target

    def get(self, name: str) -> type[T]:
        self._load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        target = self._entries[name]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            loaded = getattr(importlib.import_module(module_name), attr)
            self._check(name, loaded)
            self._entries[name] = loaded
            return loaded  # type: ignore[no-any-return]
        return target

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[tuple[str, type[T]]]:
        for name in self.names():
            yield name, self.get(name)

    def _check(self, name: str, target: object) -> None:
        if not (isinstance(target, type) and issubclass(target, self.base)):
            raise RegistryError(
                f"{self.kind} {name!r} must be a subclass of {self.base.__name__}, got {target!r}"
            )

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in entry_points(group=self.group):
            if entry.name not in self._entries:
                self._entries[entry.name] = entry.value

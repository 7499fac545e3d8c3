"""Name -> class registries for algorithms and tasks, fed by decorators and entry points.

Built-in entries register themselves when `moabench.algorithms` / `moabench.tasks` are imported.
Third-party packages declare entry points in the groups `moabench.algorithms` and `moabench.tasks`;
each entry point names a module (or an object) whose import registers its entries.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo

T = TypeVar("T")


class Registrable:
    """What every registered class offers to `moabench list`: a one-line description (the first
    line of its docstring) and its parameters with their defaults (its pydantic `Params` model)."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    @classmethod
    def description(cls) -> str:
        return cls.__doc__.strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def parameters(cls) -> dict[str, FieldInfo]:
        """Its parameters: name -> pydantic field (default, description)."""
        return dict(cls.Params.model_fields)

    @classmethod
    def hyperparameters(cls) -> dict[str, Any]:
        """Parameter names and their defaults."""
        return {
            name: field.get_default(call_default_factory=True)
            for name, field in cls.parameters().items()
        }


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """One line for a name not among `known`: the close matches, then every known name."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}."


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the close matches and the known names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """Two different entries registered under one name."""


class Registry(Generic[T]):
    """A registry of named classes of one kind ("algorithm" or "task")."""

    def __init__(self, kind: str, builtin_module: str, entry_point_group: str) -> None:
        self.kind = kind
        self._builtin_module = builtin_module
        self._entry_point_group = entry_point_group
        self._entries: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: `@register_algorithm("my-rule")` makes the class available by name."""

        def decorator(cls: type[T]) -> type[T]:
            existing = self._entries.get(name)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self._builtin_module)
        for entry_point in entry_points(group=self._entry_point_group):
            entry_point.load()

    def get(self, name: str) -> type[T]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_name_message(name)) from None

    def unknown_name_message(self, name: str) -> str:
        return unknown_name_message(self.kind, name, self.names())

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[type[T]]:
        return (self.get(name) for name in self.names())

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

"""A tiny name -> factory registry shared by datasets, models, attacks and methods.

Registries (not if/elif chains) let the CLI's ``list`` command, the config validator and
the parametrised test-suite discover every entry, so a new entry is tested automatically.

Example:
    >>> from robustrain.utils.registry import Registry
    >>> COLORS = Registry("color")
    >>> @COLORS.register("red", help="the colour red")
    ... def red():
    ...     return (255, 0, 0)
    >>> COLORS.get("red")()
    (255, 0, 0)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

__all__ = ["Registry", "RegistryEntry"]

T = TypeVar("T")


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    """One registered object with its one-line help and free-form metadata."""

    name: str
    obj: T
    help: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps names to objects (factories, classes or metadata records).

    Args:
        kind: what the registry holds, used in error messages ("dataset", "model", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry[T]] = {}

    def register(self, name: str, *, help: str = "", **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is an error."""

        def deco(obj: T) -> T:
            self.add(name, obj, help=help, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, *, help: str = "", **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not help and getattr(obj, "__doc__", None):
            help = (obj.__doc__ or "").strip().splitlines()[0]
        self._entries[name] = RegistryEntry(name, obj, help, dict(meta))

    def entry(self, name: str) -> RegistryEntry[T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._entries))}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[RegistryEntry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

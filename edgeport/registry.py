"""A plain dict registry used for every axis (models, op lowerings, calibration sources, engines, targets)."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgeport.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> entry. Duplicates raise; an unknown name raises an error that lists the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"duplicate {self.kind} {name!r}")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            return self.register(name, entry)

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

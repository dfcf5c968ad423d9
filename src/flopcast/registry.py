"""One generic name -> object registry. Duplicate names raise; unknown names suggest close ones."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from flopcast.errors import UnknownName

T = TypeVar("T")
_LOAD_LOCK = threading.RLock()   # one for all registries: a loader may read another registry


class Registry(Generic[T]):
    """Named objects of one kind (schedulers, cost models, catalog entries...).

    Entries are either registered directly or produced on first `get` by a loader, so that
    reading a catalog costs nothing until an entry is asked for.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loaders: dict[str, Callable[[], T]] = {}

    def register(self, name: str, item: T | None = None, *, loader: Callable[[], T] | None = None):
        """Register `item` (or a lazy `loader`) under `name`. Usable as a decorator:
        `@registry.register("vllm")`."""
        if item is None and loader is None:
            def decorator(obj: T) -> T:
                self.register(name, obj)
                return obj
            return decorator
        if name in self._items or name in self._loaders:
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        if loader is not None:
            self._loaders[name] = loader
        elif item is not None:
            self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """The entry named `name`, loaded on first use. Safe from several threads (the service):
        a loader runs once, and an entry being loaded is never reported unknown."""
        if name in self._items:
            return self._items[name]
        with _LOAD_LOCK:
            if name in self._items:
                return self._items[name]
            if name in self._loaders:
                item = self._loaders[name]()
                self._items[name] = item
                del self._loaders[name]
                return item
        raise UnknownName(self.kind, name, self.names())

    def names(self) -> list[str]:
        return sorted({*self._items, *self._loaders})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items) + len(self._loaders)

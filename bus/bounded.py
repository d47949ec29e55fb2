"""Maps keyed by names that peers choose (topics, sources, cameras, request ids), with a hard size bound.

A peer can invent any number of names; a plain dict keyed by them grows until the process dies. Every
such map in the project is a `BoundedDict`: least recently used entries are evicted once `max_items` is
reached, and the evictions are counted so that a flood shows in the stats instead of in RSS.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedDict(Generic[K, V]):
    """An LRU map of at most `max_items` entries; `evicted` counts what fell out.

    `protected(key)` (optional) marks keys that are never evicted (configured cameras, say); they
    still count towards the bound, so a config with more protected keys than `max_items` is an error
    for the caller to refuse, not something this class grows for.
    """

    __slots__ = ("max_items", "evicted", "_data", "_protected", "on_evict")

    def __init__(
        self,
        max_items: int,
        *,
        protected: Callable[[K], bool] | None = None,
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.evicted = 0
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._protected = protected
        self.on_evict = on_evict

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._data.get(key, default)
        if key in self._data:
            self._data.move_to_end(key)
        return value

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        if key in self._data:
            self._data.move_to_end(key)
        self._data[key] = value
        while len(self._data) > self.max_items:
            if not self._evict_one():
                break

    def _evict_one(self) -> bool:
        for old in self._data:
            if self._protected is None or not self._protected(old):
                value = self._data.pop(old)
                self.evicted += 1
                if self.on_evict is not None:
                    self.on_evict(old, value)
                return True
        return False  # every key is protected: the caller bounds those

    def setdefault(self, key: K, factory: Callable[[], V]) -> V:
        """The value for `key`, created by `factory()` (and inserted, evicting if full) when absent."""
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        value = factory()
        self[key] = value
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def keys(self) -> list[K]:
        return list(self._data)

    def values(self) -> list[V]:
        return list(self._data.values())

    def items(self) -> list[tuple[K, V]]:
        return list(self._data.items())

    def clear(self) -> None:
        self._data.clear()

"""A map of bounded size that forgets the keys unused longest: the rate limiters' buckets and the verified
ingest tokens, one entry per live session each.

Two plain dicts, the young and the old generation. A key found in the old one moves to the young one; when
the young one holds half the bound it becomes the old one, and what the old one held is dropped. So every key
used within the last half-bound insertions is kept, and no more than the bound is. An ``OrderedDict`` would
keep exact recency at about 50 more bytes per entry (its linked list), which with an entry per idle session is
a sizeable share of what an idle session costs.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    __slots__ = ("_half", "_old", "_young")

    def __init__(self, max_keys: int) -> None:
        self._half = max(1, max_keys // 2)
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, key: K) -> V | None:
        """The value, now counted as used; None for a key not held."""
        value = self._young.get(key)
        if value is None:
            value = self._old.pop(key, None)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        young = self._young
        young[key] = value
        if len(young) > self._half:
            self._old, self._young = young, {}

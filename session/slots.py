"""LatestSlot: a small mailbox where the newest items win and the ones pushed out are counted."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most `capacity` items (one by default), taken oldest first. `put`
    into a full slot pushes out the oldest item nobody took; `replaced` counts
    those, so every item that never reached `take` is accounted for."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"a slot holds at least one item, not {capacity}")
        self._items: deque[T] = deque()
        self.capacity = capacity
        self.replaced = 0

    def put(self, item: T) -> T | None:
        """Store `item`; return the unread item it pushed out, if any."""
        self._items.append(item)
        if len(self._items) > self.capacity:
            self.replaced += 1
            return self._items.popleft()
        return None

    def take(self) -> T | None:
        return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Take every item, unread; returns how many there were."""
        count = len(self._items)
        self._items.clear()
        return count

    def peek(self) -> T | None:
        """The item `take` would return."""
        return self._items[0] if self._items else None

    def __iter__(self) -> Iterator[T]:
        """The items, oldest first, left in place."""
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

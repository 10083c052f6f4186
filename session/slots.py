"""LatestSlot: a one-item mailbox where the newest item wins and replacements are counted."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item. `put` replaces an item nobody took; `replaced`
    counts those, so every item that never reached `take` is accounted for."""

    def __init__(self) -> None:
        self._item: T | None = None
        self.replaced = 0

    def put(self, item: T) -> T | None:
        """Store `item`; return the unread item it replaced, if any."""
        previous, self._item = self._item, item
        if previous is not None:
            self.replaced += 1
        return previous

    def take(self) -> T | None:
        item, self._item = self._item, None
        return item

    def peek(self) -> T | None:
        return self._item

    def __bool__(self) -> bool:
        return self._item is not None

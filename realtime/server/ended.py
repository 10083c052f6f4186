"""Recently ended WebRTC resources, so that their owner's late DELETE succeeds.

A WHIP or WHEP client may close its peer connection before it sends DELETE (RFC 9725
teardown); the session (or viewer) has ended by then. Its owner is told 200, as if
the DELETE had ended it; anyone else still gets the 404 of an unknown id. Bounded in
count and in age: a client that waits longer gets 404.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from realtime.server.auth import Identity

MAX_ENDED = 1024
ENDED_FOR_S = 300.0


@dataclass(frozen=True)
class EndedResource:
    owner: Identity
    model_id: str
    ended_at: float


class Ended:
    """The last `limit` resources (a session id, or `session_id/viewer_id`) that
    ended, for `for_s` seconds each."""

    def __init__(self, limit: int = MAX_ENDED, for_s: float = ENDED_FOR_S) -> None:
        self.limit = limit
        self.for_s = for_s
        self._ended: OrderedDict[str, EndedResource] = OrderedDict()

    def add(self, resource: str, owner: Identity, model_id: str) -> None:
        self._ended.pop(resource, None)
        self._ended[resource] = EndedResource(owner, model_id, time.monotonic())
        self._forget_old()

    def get(self, resource: str) -> EndedResource | None:
        self._forget_old()
        return self._ended.get(resource)

    def _forget_old(self) -> None:
        expired = time.monotonic() - self.for_s
        while self._ended and (
            len(self._ended) > self.limit or next(iter(self._ended.values())).ended_at < expired
        ):
            self._ended.popitem(last=False)

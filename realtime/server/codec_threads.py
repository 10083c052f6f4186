"""CodecThreads: the threads that decode input images and encode outputs, off the event loop.

A `ThreadPoolExecutor` behind `run_in_executor` or `asyncio.to_thread` costs the
loop 170-260 us of CPU per call on the 2-core machine (a concurrent Future with
its Condition, two futures chained by callbacks, the pool's thread accounting,
a context copy), more than a 256x256 JPEG encode. Here a call is one queue put
and one `call_soon_threadsafe`: about 100 us, most of it the two wake-ups
(docs/benchmarks.md, server overhead).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class CodecThreads:
    """`count` threads taking calls in the order given; `shutdown` once at the end."""

    def __init__(self, count: int, name: str = "codec") -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, function: Callable[[], T]) -> T:
        """`function()` on one of the threads. Cancelling the wait skips the call if no
        thread has taken it yet."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, function))
        return await future

    def shutdown(self) -> None:
        """The threads end after the calls queued before; nobody awaits those any more."""
        for _ in self._threads:
            self._calls.put(None)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, function = call
            if future.cancelled():  # a read of a flag: benign from this thread
                continue
            try:
                result = function()
            except BaseException as error:  # handed to the awaiting task, whatever it is
                _settle_threadsafe(loop, _set_exception, future, error)
            else:
                _settle_threadsafe(loop, _set_result, future, result)


def _settle_threadsafe(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
        loop.call_soon_threadsafe(settle, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled meanwhile
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(error)

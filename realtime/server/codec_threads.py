"""CodecThreads: threads that decode input images or encode outputs, off the event loop.

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
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

ENCODE_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Threads encoding outputs: as many as asyncio's default executor, where encoding ran
before. Outputs are bounded by what the models make, so they need no bound of their
own (decoding has one: `--decode-threads`)."""

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class CodecThreads:
    """Up to `count` threads taking calls in the order given; `shutdown` once at the end.

    A thread starts only when a call finds none idle, as in ThreadPoolExecutor: one
    session's decodes and encodes then keep to one thread, whose caches are warm,
    where threads started up front take turns (12 % more CPU per frame, closed loop)."""

    def __init__(self, count: int, name: str = "codec") -> None:
        self._count = count
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    async def run(self, function: Callable[[], T]) -> T:
        """`function()` on one of the threads. Cancelling the wait skips the call if no
        thread has taken it yet."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, function))
        if not self._idle.acquire(blocking=False) and len(self._threads) < self._count:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return await future

    def shutdown(self) -> None:
        """The threads end after the calls queued before; nobody awaits those any more."""
        for _ in self._threads:
            self._calls.put(None)

    def _work(self) -> None:
        while (call := self._get()) is not None:
            loop, future, function = call
            if future.cancelled():  # a read of a flag: benign from this thread
                continue
            try:
                result = function()
            except BaseException as error:  # handed to the awaiting task, whatever it is
                _settle_threadsafe(loop, _set_exception, future, error)
            else:
                _settle_threadsafe(loop, _set_result, future, result)

    def _get(self) -> _Call | None:
        """The next call, or None at shutdown."""
        try:
            return self._calls.get_nowait()
        except queue.Empty:
            self._idle.release()  # counted idle while it waits, taken back by the next call
            return self._calls.get()


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

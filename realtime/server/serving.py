"""Running the app under uvicorn, and stopping it in order.

uvicorn alone would close every WebSocket at once with 1012 on SIGTERM.
`DrainingServer` first closes the listening sockets, then lets the sessions
end gracefully (`ServerState.drain`: `closing`, the frame in the model comes
out, close 1000), and only then lets uvicorn cut off what is left.

Every way of stopping ends cleanly: the port is bound before the app starts, so a
port in use is one line and exit 1 before any model loads; SIGTERM exits 0 and
Ctrl-C 130, without a traceback, whether the models are loading or serving.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from models.base import ModelEntry
from realtime.server.app import create_app
from realtime.server.config import Listen, ServerConfig
from realtime.server.flow_control import FlowControlledWebSocket
from realtime.server.header_timeout import with_header_timeout


def uvicorn_config(app: Starlette, listen: Listen, max_message_bytes: int) -> uvicorn.Config:
    """How `realtime serve` runs an app (tests that serve an app of their own use it too)."""
    return uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        # uvicorn's websockets-sansio, bounded: reading pauses while the peer does not read
        # what we write (pongs included), and a close the peer stalls is cut off.
        ws=FlowControlledWebSocket,
        ws_max_size=max_message_bytes,
        http=with_header_timeout(listen.header_timeout_s),
        limit_concurrency=listen.limit_concurrency,
        timeout_keep_alive=listen.timeout_keep_alive_s,
        # Frames are JPEG, PNG or WebP: deflating them costs CPU and saves nothing.
        ws_per_message_deflate=False,
        loop="auto",
        log_config=None,
        log_level=listen.log_level,
        lifespan="on",
        ssl_certfile=listen.ssl_certfile,
        ssl_keyfile=listen.ssl_keyfile,
        timeout_graceful_shutdown=math.ceil(listen.shutdown_timeout_s),
    )


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose stop drains the sessions first (`drain`), and for which
    SIGTERM and Ctrl-C are orderly stops: once stopped, `interrupted` tells whether it
    was Ctrl-C, where uvicorn would re-raise the signal (a KeyboardInterrupt traceback,
    or "killed by SIGTERM")."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain
        self.interrupted = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets is not None and self.started:
            # uvicorn says where it listens only when it bound the socket itself.
            self._log_started_message(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listening in self.servers:
            listening.close()
        await self._drain()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled on the main thread
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.interrupted = self.interrupted or sig == signal.SIGINT
        self.handle_exit(sig, frame)


def serve(config: ServerConfig, registry: Mapping[str, ModelEntry], listen: Listen) -> int:
    """Load and warm `config.models`, serve them until SIGTERM or Ctrl-C, drain, stop.
    Returns the exit status: 1 when the port is taken or a model could not load, 130
    after Ctrl-C, else 0."""
    try:
        listening = listen.bind()
    except OSError as error:
        reason = error.strerror or str(error)
        print(
            f"realtime serve: cannot listen on {listen.host}:{listen.port}: {reason}",
            file=sys.stderr,
        )
        return 1
    failed = False

    def stop_on_load_failure() -> None:
        nonlocal failed
        failed = True
        server.should_exit = True

    app = create_app(config, registry=registry, on_load_failed=stop_on_load_failure)

    async def drain() -> None:
        await app.state.server.drain(listen.shutdown_timeout_s)

    server = DrainingServer(uvicorn_config(app, listen, config.max_message_bytes), drain)
    server.run(sockets=[listening])
    status = 130 if server.interrupted else 1 if failed else 0
    state = getattr(app.state, "server", None)
    if state is not None and any(worker.is_running for worker in state.pool.workers):
        _exit_now(status)
    return status


def _exit_now(status: int) -> None:
    """End the process without finalizing the interpreter. A model thread still loading
    cannot be interrupted, and finalizing while it runs in torch's C++ code aborts the
    process ("terminate called without an active exception", exit 134)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # stopping already: a second signal changes nothing
    logging.getLogger("realtime.server.serving").info(
        "exiting without waiting for a model thread still at work (loading)"
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

"""WebSocket connections whose cost is bounded whatever the peer sends.

uvicorn's websockets-sansio protocol pauses reading only while the app has a
message it has not taken. Control frames never reach the app: each ping is
answered with a pong written at once, so a peer that sends pings and never
reads makes the server buffer pongs without limit (+35 MB per 300k pings).
And a connection it closes waits for its unsent data to flush, forever if the
peer never reads. `FlowControlledWebSocket` is that protocol with both bounded:

- reading also pauses while the transport's write buffer is over its
  high-water mark (the transport's pause_writing / resume_writing), whatever
  frames arrive, so what we owe a peer is at most one read's worth of pongs
  above the mark;
- a close (the closing handshake's reply, or the flush after it) that the peer
  does not complete within CLOSE_TIMEOUT_S is an abort: a refused or ended
  connection cannot hold its socket and buffer by not reading.

It also answers a peer's close frame that carries no code (what a browser's or
`ws`'s `close()` sends) with 1000, where websockets echoes the empty frame, which
the peer reads as 1005: fal's JS client reports every code but 1000 as an error,
its own `connection.close()` included (docs/fal.md).

Its transport is wrapped in a `ReadGate`, because the protocol pauses and
resumes reading in several places of its own; the gate keeps reading paused
while either reason holds.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

CLOSE_TIMEOUT_S = 3.0
"""How long a closing connection waits for the peer's close reply, and then for its
unsent data to flush, before it is cut off (uvicorn waits 10 s, then forever)."""


class ReadGate(asyncio.Transport):
    """A transport whose reading is paused while the app is behind (the protocol's own
    pause_reading) or the peer is (`peer_behind`), and whose `close` becomes an abort
    after `close_timeout` seconds. Forwards what the WebSocket protocol uses."""

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, close_timeout: float
    ) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._close_timeout = close_timeout
        self._app_behind = False
        self._peer_behind = False
        self._abort: asyncio.TimerHandle | None = None
        self._unsent: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # What is written in one turn of the loop (an output's metadata, then its
        # image) leaves in one writev at its end: a syscall and a wake-up of the peer
        # fewer per output.
        if not self._unsent:
            self._loop.call_soon(self._flush)
        self._unsent.append(data if isinstance(data, bytes) else bytes(data))

    def _flush(self) -> None:
        if self._unsent:
            self._transport.writelines(self._unsent)
            self._unsent = []

    def close(self) -> None:
        self._flush()
        self._transport.close()
        if self._abort is None:
            self._abort = self._loop.call_later(self._close_timeout, self._transport.abort)

    def abort(self) -> None:
        self._unsent = []
        self._transport.abort()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._app_behind = True
        self._update()

    def resume_reading(self) -> None:
        self._app_behind = False
        self._update()

    def peer_behind(self, behind: bool) -> None:
        """The write buffer went over its high-water mark (True) or under its low one."""
        self._peer_behind = behind
        self._update()

    def lost(self) -> None:
        """The connection is gone: no abort is due."""
        if self._abort is not None:
            self._abort.cancel()

    def _update(self) -> None:
        if self._transport.is_closing():
            return  # a closing transport reads no more
        if self._app_behind or self._peer_behind:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()


class NormalClosing(ServerProtocol):
    """websockets' server protocol, answering a close frame without a code with 1000
    rather than an empty echo (RFC 6455 has a reply echo the code "typically"). What
    the peer sent stays the code received (1005)."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE and not frame.data and self.state is State.OPEN:
            self.send_close(CloseCode.NORMAL_CLOSURE)  # then no echo: we sent a close
        super().recv_frame(frame)


class FlowControlledWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, with reading paused while the peer does
    not take what we write, closes bounded by CLOSE_TIMEOUT_S, and a close without a
    code answered with 1000 (module docstring). Give it to uvicorn as
    `ws=FlowControlledWebSocket`."""

    transport: ReadGate

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = CLOSE_TIMEOUT_S
        self.conn.__class__ = NormalClosing  # the protocol uvicorn made, as configured

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = ReadGate(cast(asyncio.Transport, transport), self.loop, CLOSE_TIMEOUT_S)
        super().connection_made(gate)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.transport.lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.transport.peer_behind(True)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.transport.peer_behind(False)

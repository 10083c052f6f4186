"""Request headers must arrive in time.

uvicorn times out a connection that idles between requests (`timeout_keep_alive`),
but not one that connects and never sends a request, nor one that sends its
headers a byte at a time (slowloris): either holds a socket forever, and enough
of them fill `limit_concurrency` or the file descriptor limit. `HeaderTimeoutH11`
is uvicorn's h11 protocol that closes a connection whose request headers are not
complete `header_timeout` seconds after it connected or after its last response.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutH11(H11Protocol):
    header_timeout: float = 10.0
    _headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._headers_due is not None:
            self._headers_due.cancel()

    def _expect_headers(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
        self._headers_due = self.loop.call_later(self.header_timeout, self._close_if_no_headers)

    def _close_if_no_headers(self) -> None:
        # IDLE: no complete request yet (h11 holds partial headers back). After a
        # WebSocket upgrade this protocol is done with the connection and sees no IDLE.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closed a connection that sent no request headers in time")
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutH11]:
    """The protocol class for uvicorn's `http=`, with its timeout (uvicorn makes one
    instance per connection from the class)."""
    return type("HeaderTimeoutH11", (HeaderTimeoutH11,), {"header_timeout": seconds})

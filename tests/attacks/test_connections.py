"""Connections cost bounded memory and time: a WebSocket peer that floods pings and
never reads costs the server a bounded buffer, a refused one is cut off, and a
connection that sends no request headers is closed."""

from __future__ import annotations

import asyncio
import socket

import pytest
from raw_websocket import OP_PING, RawWebSocket, masked_frame
from support import StartServer, eventually

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.websocket import FrameOutput, StreamClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

PINGS = 500_000
PING = masked_frame(OP_PING, b"p" * 125)  # the largest control frame: its pong is as large
MAX_GROWTH = 20 * 2**20
"""The server's RSS may grow this much under one flood (it grew 58 MB before reading
paused for a peer that does not read)."""
STALLED_AFTER_S = 5.0
"""A flood stops once the server has read nothing for this long (it paused reading)."""


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "1", "--header-timeout", "1")


def flood(server: ServerProcess, websocket: RawWebSocket) -> int:
    """Send PINGS pings without reading a byte; returns how much the server's RSS grew."""
    before = server.rss_bytes()
    websocket.flood(PING, PINGS, STALLED_AFTER_S)
    return server.rss_bytes() - before


async def test_a_ping_flood_that_never_reads_costs_a_bounded_buffer(
    server: ServerProcess,
) -> None:
    websocket = RawWebSocket(server.port, "/v1/stream", receive_buffer=4096)
    try:
        growth = await asyncio.to_thread(flood, server, websocket)
        assert growth < MAX_GROWTH, f"RSS grew {growth / 2**20:.0f} MB"
    finally:
        websocket.reset()
    await eventually(lambda: server.health()["sessions"] == 0, "the slot freed")


async def test_a_refused_connection_that_floods_pings_is_cut_off(server: ServerProcess) -> None:
    async with await StreamClient.connect(server.ws_url) as holder:  # the one slot
        await holder.send_frame(encode_image(gradient_image(), "jpeg"))
        assert isinstance(await asyncio.wait_for(holder.receive(), 30), FrameOutput)
        refused = RawWebSocket(server.port, "/v1/stream", receive_buffer=4096)
        try:
            growth = await asyncio.to_thread(flood, server, refused)
            assert growth < MAX_GROWTH, f"RSS grew {growth / 2**20:.0f} MB"
            # It never read its refusal, so no close could complete: the server cuts it off.
            await eventually(lambda: not refused.is_established, "the connection cut off")
        finally:
            refused.reset()


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
async def test_a_connection_without_request_headers_is_closed(
    server: ServerProcess, sent: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as silent:
        silent.sendall(sent)  # nothing, or headers that never end
        assert await asyncio.to_thread(silent.recv, 1024) == b""  # closed, nothing said

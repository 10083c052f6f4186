"""A WebSocket client over a plain socket, for attacks a well-behaved client library
would not allow: vanishing mid-message, flooding pings without reading."""

from __future__ import annotations

import base64
import os
import socket
import struct

import numpy as np
import orjson

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x1, 0x2, 0x8, 0x9
TCP_ESTABLISHED = 1  # tcpi_state in Linux's TCP_INFO


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame, masked as a client's must be."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 2**16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), length)
    return header + mask + masked.tobytes()


class RawWebSocket:
    """Just enough of RFC 6455 over a plain socket to open a session, send frames, and
    then misbehave. `receive_buffer`: the socket's receive buffer in bytes (small, for a
    client that does not read: the server's replies back up sooner)."""

    def __init__(self, port: int, path: str, *, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._read_more()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, opcode: int, payload: bytes, *, cut_after: int | None = None) -> None:
        """A masked frame; with `cut_after`, only that many bytes of the payload are sent."""
        frame = masked_frame(opcode, payload)
        self.sock.sendall(
            frame[: None if cut_after is None else len(frame) - len(payload) + cut_after]
        )

    def flood(self, frame: bytes, count: int, stalled_after: float) -> int:
        """Send `frame` `count` times, never reading; stop early once the server has
        taken nothing for `stalled_after` seconds. Returns how many were sent whole."""
        batch = 1000
        self.sock.settimeout(stalled_after)
        sent = 0
        try:
            while sent < count:
                n = min(batch, count - sent)
                self.sock.sendall(frame * n)
                sent += n
        except TimeoutError:
            pass  # the server stopped reading
        except OSError:
            pass  # the server cut the connection
        finally:
            self.sock.settimeout(30)
        return sent

    @property
    def is_established(self) -> bool:
        """Whether the TCP connection is still up, as the kernel sees it, without reading:
        a server that closes gracefully sends its FIN only after the data we have not
        read, so only a server that cuts the connection off (RST) ends it here."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        return info[0] == TCP_ESTABLISHED

    def receive_json(self) -> dict[str, object]:
        """The next text message from the server (its frames are not masked)."""
        while True:
            opcode, payload = self._receive_frame()
            if opcode == OP_TEXT:
                message = orjson.loads(payload)
                assert isinstance(message, dict)
                return message

    def reset(self) -> None:
        """Vanish: SO_LINGER 0 makes close() send RST instead of FIN; no close frame."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def _receive_frame(self) -> tuple[int, bytes]:
        header = self._take(2)
        opcode, length = header[0] & 0x0F, header[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return opcode, self._take(length)

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._read_more()
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        return taken

    def _read_more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buffer += data

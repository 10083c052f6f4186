"""Request bodies: nothing is read before the request is authorized, and no body is
read past the cap (`--max-body-bytes`), whether it declares its length or streams it.

The attacker sends 256 MB a few MiB at a time from a raw socket, and reads the
answer while it sends: the server must answer (and close) long before the end."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from support import StartServer

from realtime.bench.harness import ServerProcess

KEY = "body-key-0123456789"
HUGE = 256 * 2**20
PIECE = b"v" * 2**20
ANSWER_TIMEOUT_S = 120
MAX_GROWTH = 100 * 2**20
"""RSS may grow this much while 4 huge bodies arrive at once (the old server: +1.5 GB)."""


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--api-key", KEY)


def post_huge(
    server: ServerProcess, path: str, headers: dict[str, str], *, declared: bool = False
) -> int:
    """POST a 256 MB body to `path` (chunked, or with its Content-Length when `declared`)
    while reading the answer; returns its status."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {HUGE}" if declared else "Transfer-Encoding: chunked")
    chunk = PIECE if declared else f"{len(PIECE):x}\r\n".encode() + PIECE + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answered = threading.Event()

        def send_body() -> None:
            try:
                for _ in range(HUGE // len(PIECE)):
                    if answered.is_set():
                        return
                    sock.sendall(chunk)
                if not declared:
                    sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed: what it should do

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = b""
        while b"\r\n" not in answer:
            received = sock.recv(4096)
            assert received, "the server closed without an answer"
            answer += received
        answered.set()
        sender.join(ANSWER_TIMEOUT_S)
    return int(answer.split()[1])


@contextmanager
def peak_rss_growth(server: ServerProcess) -> Iterator[list[int]]:
    """Samples the server's RSS meanwhile; yields a list that then holds the peak growth."""
    baseline = server.rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], server.rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        done.set()
        sampler.join(5)
        growth[0] = peak[0] - baseline


def four_at_once(
    server: ServerProcess, path: str, headers: dict[str, str]
) -> tuple[list[int], int]:
    """Four huge bodies to `path` at once: their statuses, and the server's peak RSS growth."""
    with peak_rss_growth(server) as growth, ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: post_huge(server, path, headers), range(4)))
    return statuses, growth[0]


SDP = {"Content-Type": "application/sdp"}
JSON = {"Content-Type": "application/json"}
AUTHORIZED = {"Authorization": f"Bearer {KEY}"}
WRONG_KEY = {"Authorization": "Bearer not-the-key"}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        # Refused from the headers, before a byte of the body is read.
        ("/v1/whip?model=invert", SDP, 401),
        ("/v1/whep/0123456789ab", SDP, 401),
        ("/v1/webrtc/offer", JSON | WRONG_KEY, 401),
        ("/v1/tokens", JSON, 401),
        # Authorized (or, for an offer without a header, looked at for a token in its
        # body): read up to the cap, and refused there.
        ("/v1/whip?model=invert", SDP | AUTHORIZED, 413),
        ("/v1/webrtc/offer", JSON | AUTHORIZED, 413),
        ("/v1/webrtc/offer", JSON, 413),
        ("/v1/tokens", JSON | AUTHORIZED, 413),
    ],
)
def test_a_huge_body_is_refused_unread_or_at_the_cap(
    server: ServerProcess, path: str, headers: dict[str, str], status: int
) -> None:
    statuses, growth = four_at_once(server, path, headers)
    assert statuses == [status] * 4
    assert growth < MAX_GROWTH, f"RSS grew {growth / 2**20:.0f} MiB"


def test_a_declared_length_over_the_cap_is_refused_before_the_body(server: ServerProcess) -> None:
    """Refused from the headers: answered even though the body never comes."""
    head = (
        "POST /v1/whip?model=invert HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/sdp\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {HUGE}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        answer = b""
        while received := sock.recv(4096):  # until the server closes
            answer += received
    assert answer.split()[1] == b"413", answer
    assert b'"too_large"' in answer
    assert post_huge(server, "/v1/tokens", AUTHORIZED, declared=True) == 413

"""Attacks through WebRTC signalling, against a real `realtime serve` over loopback.

An offer's cost is bounded before aiortc sees it (realtime/server/offers.py): 10,000
candidates are answered at once while other sessions stream on, the server sends
its ICE checks only to a few plausible candidates, and offers over the media section
and line limits are refused. WHEP viewers are capped per session (`--max-viewers`),
and one that never connects is dropped after `--connect-timeout`, its sockets freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import av
import fuzzing
import httpx
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from support import StartServer, eventually, wait_until

from frames.samples import gradient_image
from realtime.bench.harness import ServerProcess
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import ServerError
from realtime.server.offers import (
    MAX_CANDIDATES_PER_SECTION,
    MAX_MEDIA_SECTIONS,
    MAX_OFFER_LINES,
    bounded_offer,
    plausible_candidate,
)
from session.errors import BadOffer

ASYNC = pytest.mark.asyncio(loop_scope="module")
"""For the async tests: the others check offers.py's rules directly."""

TIMEOUT_S = 30
MAX_VIEWERS = 2
CONNECT_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert", "--max-sessions", "4")


@pytest.fixture(scope="module")
def viewed(start_server: StartServer) -> ServerProcess:
    """A server whose sessions take few viewers, and give up on peers quickly."""
    return start_server(
        "--model", "invert",
        "--max-viewers", str(MAX_VIEWERS),
        "--connect-timeout", str(CONNECT_TIMEOUT_S),
    )  # fmt: skip


# Offers with candidates of the test's choosing


async def local_offer(pc: RTCPeerConnection) -> str:
    """`pc`'s offer, as a browser makes it: video both ways and the control channel."""
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def an_offer(*, candidates: bool = True) -> str:
    """An offer from a peer that is gone at once: it never connects. Without its
    candidates the server's ICE cannot even fail: it waits for more."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    try:
        sdp = await local_offer(pc)
    finally:
        await pc.close()
    if candidates:
        return sdp
    ice = ("a=candidate:", "a=end-of-candidates")
    return "".join(line for line in sdp.splitlines(True) if not line.startswith(ice))


def candidate(number: int, address: str, port: int, transport: str = "udp") -> str:
    """A host candidate, listed before the offerer's own: the higher `number`, the
    lower its priority."""
    return f"a=candidate:{number} 1 {transport} {2**31 - number} {address} {port} typ host"


def with_candidates(sdp: str, candidates: list[str]) -> str:
    """`sdp` with `candidates` first in its first media section."""
    head, media, rest = sdp.partition("\r\nm=")
    m_line, _, after = rest.partition("\r\n")
    return "\r\n".join([head + media + m_line, *candidates, after])


def post_offer(url: str, sdp: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/webrtc/offer", json={"type": "offer", "sdp": sdp}, timeout=120)


@contextlib.contextmanager
def bystander_streaming(server: ServerProcess) -> Iterator[fuzzing.Bystander]:
    """A WebSocket session in a thread, each frame checked, for as long as the block runs."""
    bystander = fuzzing.Bystander(server.ws_url)
    thread = threading.Thread(target=bystander.run, daemon=True)
    thread.start()
    wait_until(lambda: bystander.good_frames or bystander.failures, "the bystander's frame")
    try:
        yield bystander
    finally:
        bystander.stop.set()
        thread.join(fuzzing.REPLY_TIMEOUT_S)


def sessions(server: ServerProcess) -> int:
    return int(server.health()["sessions"])


# Bounded offers


@ASYNC
async def test_10000_candidates_are_answered_at_once_and_stall_no_session(
    server: ServerProcess,
) -> None:
    """The old server compared each candidate with every one before it, on the event
    loop: 10,000 froze every session for 10 to 30 s. Now the extras are dropped (or a
    body limit refuses the offer) while a WebSocket session streams on, each of its
    replies within its 15 s timeout; a served peer connects all the same."""
    fakes = [candidate(n, "127.0.0.1", 10_000 + n) for n in range(10_000)]
    pc = RTCPeerConnection()
    pc.addTransceiver(CameraTrack(gradient_image()), direction="sendrecv")
    video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    pc.on("track", video.set_result)
    try:
        with bystander_streaming(server) as bystander:
            before = bystander.good_frames
            sdp = with_candidates(await local_offer(pc), fakes)
            answer = await asyncio.to_thread(post_offer, server.http_url, sdp)
            assert bystander.failures == []
        assert bystander.good_frames > before
        if answer.status_code != 200:  # refused whole: over a body limit, or bad_offer
            assert answer.status_code in (400, 413), answer.text
            assert answer.status_code == 413 or answer.json()["code"] == "bad_offer"
            return
        # Its own candidates were among those dropped: the server learns its address
        # from its checks (a peer-reflexive candidate), as ICE allows.
        await pc.setRemoteDescription(RTCSessionDescription(answer.json()["sdp"], "answer"))
        track = await asyncio.wait_for(video, TIMEOUT_S)
        frame = await asyncio.wait_for(track.recv(), TIMEOUT_S)
        assert isinstance(frame, av.VideoFrame)
        assert (frame.width, frame.height) == (256, 256)
    finally:
        await pc.close()
    await eventually(lambda: sessions(server) == 0, "the session to end")


class Listeners:
    """UDP sockets on loopback standing for candidates: which got a STUN binding request."""

    def __init__(self, ports: list[int]) -> None:
        self.sockets = []
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            sock.setblocking(False)
            self.sockets.append(sock)
        self.checked: set[int] = set()

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self.sockets]

    def poll(self) -> set[int]:
        """The indices of the sockets that were sent a binding request so far."""
        for index, sock in enumerate(self.sockets):
            with contextlib.suppress(BlockingIOError):
                while True:
                    if sock.recv(2048)[:2] == b"\x00\x01":  # STUN Binding Request
                        self.checked.add(index)
        return self.checked

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def low_port() -> int | None:
    """A free port under 1024 when this test may bind one (root, or the loopback-only
    user namespace), else None."""
    for port in range(1000, 1024):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except PermissionError:
                return None
            except OSError:
                continue
            return port
    return None


@ASYNC
async def test_the_server_checks_only_a_few_plausible_candidates(server: ServerProcess) -> None:
    """The old server sent STUN checks to every candidate, to any port. Now a candidate
    on a port under 1024 is never sent anything, and of the plausible ones it checks
    the first MAX_CANDIDATES_PER_SECTION of the section only, however long it waits."""
    low = low_port()
    plausible = Listeners([0] * (MAX_CANDIDATES_PER_SECTION + 4))
    privileged = Listeners([] if low is None else [low])
    try:
        # Highest priority first: the privileged port, then the plausible ones in turn.
        candidates = [candidate(0, "127.0.0.1", port) for port in privileged.ports]
        candidates += [candidate(n + 1, "127.0.0.1", p) for n, p in enumerate(plausible.ports)]
        answer = post_offer(server.http_url, with_candidates(await an_offer(), candidates))
        assert answer.status_code == 200, answer.text
        try:
            first = set(range(MAX_CANDIDATES_PER_SECTION))
            await eventually(lambda: plausible.poll() >= first, "checks of the first candidates")
            # The old server checked one more candidate every 20 ms: give it 50 of them.
            await asyncio.sleep(1)
            assert plausible.poll() == first
            assert privileged.poll() == set()
        finally:
            session = answer.json()["session_id"]
            assert httpx.delete(f"{server.http_url}/v1/whip/{session}").status_code == 200
    finally:
        plausible.close()
        privileged.close()


@ASYNC
async def test_offers_over_the_section_and_line_limits_are_refused(server: ServerProcess) -> None:
    offer = await an_offer()
    data = offer[offer.index("m=application") :]
    too_many_sections = offer + data * (MAX_MEDIA_SECTIONS - 1)
    too_long = offer + "".join(f"a=x-filler:{n}\r\n" for n in range(MAX_OFFER_LINES))
    for sdp, limit in [
        (too_many_sections, f"1 to {MAX_MEDIA_SECTIONS} media sections"),
        (too_long, f"at most {MAX_OFFER_LINES} lines"),
    ]:
        answer = post_offer(server.http_url, sdp)
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "bad_offer"
        assert answer.json()["field"] == "sdp"
        assert limit in answer.json()["message"]
    assert sessions(server) == 0


@pytest.mark.parametrize(
    ("line", "plausible"),
    [
        ("1 1 udp 2130706431 192.168.1.20 50000 typ host", True),
        ("1 1 UDP 2130706431 203.0.113.7 50000 typ srflx raddr 0.0.0.0 rport 0", True),
        ("1 1 udp 2130706431 2001:db8::7 50000 typ relay", True),
        ("1 1 udp 2130706431 4d1f7c2d-0c3e-4a5b-9e6f-1a2b3c4d5e6f.local 50000 typ host", True),
        ("1 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active", False),
        ("1 1 tcp 1518280447 192.168.1.20 50000 typ host tcptype passive", False),
        ("1 1 udp 2130706431 192.168.1.20 53 typ host", False),
        ("1 1 udp 2130706431 192.168.1.20 70000 typ host", False),
        ("1 1 udp 2130706431 0.0.0.0 50000 typ host", False),
        ("1 1 udp 2130706431 :: 50000 typ host", False),
        ("1 1 udp 2130706431 224.0.0.251 50000 typ host", False),
        ("1 1 udp 2130706431 ff02::1 50000 typ host", False),
        ("1 1 udp 2130706431 169.254.10.1 50000 typ host", False),
        ("1 1 udp 2130706431 fe80::1 50000 typ host", False),
        ("1 1 udp 2130706431 255.255.255.255 50000 typ host", False),
        ("1 1 udp 2130706431 ::ffff:127.0.0.1 50000 typ host", False),
        ("1 1 udp 2130706431 127.0.0.1 50000 typ host", False),  # from a remote peer
        ("1 1 udp 2130706431 ::1 50000 typ host", False),
        ("1 1 udp 2130706431 example.com 50000 typ host", False),
        ("1 1 udp 2130706431 192.168.1.20 50000 typ nonsense", False),
        ("1 1 udp 2130706431 192.168.1.20 port typ host", False),
        ("1 1 udp 2130706431 192.168.1.20 50000", False),
    ],
)
def test_which_candidates_are_plausible(line: str, plausible: bool) -> None:
    assert plausible_candidate(line, loopback_peer=False) is plausible


def test_loopback_candidates_only_for_a_peer_on_loopback() -> None:
    loopback = "1 1 udp 2130706431 127.0.0.1 50000 typ host"
    assert plausible_candidate(loopback, loopback_peer=True)
    offer = f"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:{loopback}\r\n"
    assert bounded_offer(offer, "127.0.0.1") == (offer, 0)
    assert bounded_offer(offer, "::1") == (offer, 0)
    assert bounded_offer(offer, "192.0.2.1")[1] == 1
    assert bounded_offer(offer, None)[1] == 1


def test_bounded_offer_keeps_the_first_plausible_candidates_of_each_section() -> None:
    extra = 3
    ports = range(20000, 20000 + MAX_CANDIDATES_PER_SECTION + extra)
    section = [candidate(0, "10.0.0.1", 80), *(candidate(1, "10.0.0.1", p) for p in ports)]
    lines = ["v=0", candidate(0, "10.0.0.1", 5000)]  # outside any section: meaningless
    lines += ["m=video 9 X 0", *section, "a=end-of-candidates", "m=application 9 X 0", *section]
    offer, dropped = bounded_offer("\n".join(lines), "192.0.2.1")
    assert dropped == 1 + 2 * (1 + extra)
    kept = ports[:MAX_CANDIDATES_PER_SECTION]
    assert offer.split("\r\n") == [
        "v=0",
        "m=video 9 X 0",
        *(candidate(1, "10.0.0.1", p) for p in kept),
        "a=end-of-candidates",
        "m=application 9 X 0",
        *(candidate(1, "10.0.0.1", p) for p in kept),
        "",
    ]


def test_what_is_not_an_offer_is_refused_before_aiortc_sees_it() -> None:
    for text in ["", "hello", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "m=video 9 X 0\r\nv=0"]:
        with pytest.raises(BadOffer) as refused:
            bounded_offer(text, None)
        assert refused.value.field == "sdp"


# Bounded viewers


@ASYNC
async def test_a_session_takes_max_viewers_and_one_more_after_one_leaves(
    viewed: ServerProcess,
) -> None:
    ingest = await RtcClient.whip(viewed.http_url, CameraTrack(gradient_image()), model="invert")
    assert ingest.session_id is not None
    viewers = [await RtcClient.whep(viewed.http_url, ingest.session_id) for _ in range(MAX_VIEWERS)]
    try:
        with pytest.raises(ServerError) as refused:
            viewers.append(await RtcClient.whep(viewed.http_url, ingest.session_id))
        assert (refused.value.status, refused.value.error.code) == (429, "viewer_limit")
        assert str(MAX_VIEWERS) in refused.value.error.message

        left = viewers.pop()
        assert left.location is not None
        assert httpx.delete(f"{viewed.http_url}{left.location}").status_code == 200
        await left.close()
        viewers.append(await RtcClient.whep(viewed.http_url, ingest.session_id))

        # Connected viewers stay past the connect timeout, and keep getting frames.
        await asyncio.sleep(CONNECT_TIMEOUT_S + 1)
        for viewer in viewers:
            await asyncio.wait_for(viewer.next_frame(), TIMEOUT_S)
            assert viewer.location is not None
            assert httpx.delete(f"{viewed.http_url}{viewer.location}").status_code == 200
    finally:
        for client in (ingest, *viewers):
            await client.close()
    await eventually(lambda: sessions(viewed) == 0, "the session to end")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@ASYNC
async def test_viewers_that_never_connect_are_dropped_and_their_sockets_freed(
    viewed: ServerProcess,
) -> None:
    ingest = await RtcClient.whip(viewed.http_url, CameraTrack(gradient_image()), model="invert")
    try:
        files_before = open_files(viewed.process.pid)
        url = f"{viewed.http_url}/v1/whep/{ingest.session_id}"
        headers = {"Content-Type": "application/sdp"}
        silent = []
        for _ in range(MAX_VIEWERS):  # they fill the session's viewer places
            offer = await an_offer(candidates=False)
            answer = httpx.post(url, content=offer, headers=headers)
            assert answer.status_code == 201, answer.text
            silent.append(answer.headers["Location"])
        refused = httpx.post(url, content=await an_offer(), headers=headers)
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "5")
        assert refused.json()["code"] == "viewer_limit"
        assert open_files(viewed.process.pid) > files_before

        await eventually(
            lambda: open_files(viewed.process.pid) <= files_before, "their sockets to close"
        )
        for gone in silent:  # ended: their owner's late DELETE succeeds (RFC 9725 teardown)
            assert httpx.delete(f"{viewed.http_url}{gone}").status_code == 200
        # Their places are free: a session with MAX_VIEWERS viewers would refuse this one.
        viewer = await RtcClient.whep(viewed.http_url, str(ingest.session_id))
        try:
            await asyncio.wait_for(viewer.next_frame(), TIMEOUT_S)
        finally:
            await viewer.close()
    finally:
        await ingest.close()
    await eventually(lambda: sessions(viewed) == 0, "the session to end")

"""The WebRTC transport: one RTCPeerConnection per session, a thin adapter over LiveSession.

    camera track   -> _read_camera: the newest decoded frame (aiortc's receive
                      queue drained, the rest counted) -> LiveSession.receive_video_frame
    _publish       -> LiveSession.next_output -> LatestOutput, and its metadata on `control`
    OutputTrack    -> recv() waits for a newer output than it last showed; one per
                      watching peer: the session's own and each WHEP viewer's

The `control` data channel carries the same JSON messages as the WebSocket's
text messages: `ready`, `params`, `frame` metadata (no image follows: the image
is on the video track) and `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import av
import orjson
from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError

from frames.device_codec import on_host
from frames.frame import Pixels
from frames.video import VIDEO_TIME_BASE, Yuv420Converter, yuv420p_to_video_frame
from realtime.ice import rtc_configuration
from realtime.server.config import ServerConfig
from realtime.server.live_session import LiveSession
from realtime.server.offers import bounded_offer
from session.errors import BadOffer, StreamError, ViewerLimit
from session.session import Message

CONTROL_CHANNEL = "control"
REPEAT_AFTER_S = 0.5
"""An output track with nothing newer to show repeats its last frame this often."""
CONTROL_HIGH_WATER = 256 * 1024
"""Frame metadata is skipped while the control channel has this much unsent."""


class LatestOutput:
    """The newest output of a session as yuv420p planes (`Yuv420Converter`), watched by
    any number of tracks."""

    def __init__(self) -> None:
        self.planes: Pixels | None = None
        self.version = 0
        self.closed = False
        self._changed = asyncio.Condition()

    async def publish(self, planes: Pixels) -> None:
        async with self._changed:
            self.planes = planes
            self.version += 1
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()

    async def newer_than(self, version: int, timeout: float) -> tuple[Pixels, int]:
        """Wait for an output newer than `version`, or `timeout` seconds for any output;
        raises MediaStreamError once closed."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.closed or self.version > version),
                    timeout,
                )
            await self._changed.wait_for(lambda: self.closed or self.planes is not None)
            if self.closed or self.planes is None:
                raise MediaStreamError
            return self.planes, self.version


class OutputTrack(MediaStreamTrack):
    """A session's generated video, paced by the encoder that pulls it.

    recv() only waits for a newer output; an encoder slower than the model skips
    the outputs it had no time for (`skipped`). With no newer output within
    REPEAT_AFTER_S it sends the last one again: a receiver's jitter buffer
    releases a frame only once the next one arrives, so a single image (type to
    image, a paused camera) would otherwise never show. Each track makes its
    own frame object: senders encode in a thread that reads the frame's pts.
    """

    kind = "video"

    def __init__(self, outputs: LatestOutput) -> None:
        super().__init__()
        self.outputs = outputs
        self.shown = 0
        self.skipped = 0
        self.repeated = 0
        self._version = 0
        self._started_at: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        planes, version = await self.outputs.newer_than(self._version, REPEAT_AFTER_S)
        if version == self._version:
            self.repeated += 1
        else:
            if self._version:
                self.skipped += version - self._version - 1
            self._version = version
            self.shown += 1
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
        return yuv420p_to_video_frame(planes, round((now - self._started_at) / VIDEO_TIME_BASE))


def _video_planes(to_yuv420p: Yuv420Converter, pixels: Pixels) -> Pixels:
    """An output's yuv420p planes; a GPU codec's outputs come off the device first."""
    return to_yuv420p(on_host(pixels))


async def newest_frame(track: MediaStreamTrack) -> tuple[av.VideoFrame, int]:
    """The next frame of `track`, fast-forwarded to the newest one queued.

    aiortc's RemoteStreamTrack queues every decoded frame without bound (aiortc
    issues #642 and #1192); taking all that is queued keeps it empty. Returns the
    frame and how many older ones it overtook.
    """
    frame = await track.recv()
    queue: asyncio.Queue[Any] | None = getattr(track, "_queue", None)
    skipped = 0
    while queue is not None and not queue.empty():
        newer = queue.get_nowait()
        if newer is None:  # end of stream: leave it for the next recv()
            queue.put_nowait(None)
            break
        frame, skipped = newer, skipped + 1
    assert isinstance(frame, av.VideoFrame), f"a video track gave {type(frame).__name__}"
    return frame, skipped


class PeerSession:
    """A LiveSession reached over WebRTC. Call `answer` once with the peer's offer;
    `close` ends it (and is called when the peer disconnects or ICE fails, or has
    not connected within `config.connect_timeout_s`)."""

    def __init__(
        self,
        live: LiveSession,
        config: ServerConfig,
        on_closed: Callable[[PeerSession], None],
        on_viewer_left: Callable[[PeerSession, str], None] = lambda peer, viewer_id: None,
    ) -> None:
        self.live = live
        self.config = config
        self.configuration = rtc_configuration(config.ice_servers)
        self.outputs = LatestOutput()
        self._to_yuv420p = Yuv420Converter()
        self.viewers: dict[str, RTCPeerConnection] = {}
        self._on_closed = on_closed
        self._on_viewer_left = on_viewer_left
        self._channel: RTCDataChannel | None = None
        self._ready: Message | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.pc = RTCPeerConnection(self.configuration)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def id(self) -> str:
        return self.live.id

    async def answer(
        self, offer_sdp: str, model_ready: asyncio.Event, peer_address: str | None
    ) -> str:
        """Accept the offer of the peer at `peer_address` (its HTTP client's); returns the
        SDP answer, all ICE candidates included."""
        answer = await self._answer(self.pc, offer_sdp, peer_address)
        self._spawn(self._start(model_ready))
        self._spawn(self._publish())
        self._spawn(self._unless_connected(self.pc, "peer", self.close))
        self._spawn(self._close_when_expired())
        return answer

    async def add_viewer(self, offer_sdp: str, peer_address: str | None) -> tuple[str, str]:
        """A WHEP viewer: a peer that only watches this session. Returns its id and answer;
        ViewerLimit when the session has `config.max_viewers` already."""
        if len(self.viewers) >= self.config.max_viewers:
            raise ViewerLimit(
                f"this session has its {self.config.max_viewers} viewers; "
                "end one (DELETE its resource) or try again later"
            )
        viewer_id = uuid.uuid4().hex[:12]
        pc = RTCPeerConnection(self.configuration)
        self.viewers[viewer_id] = pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.remove_viewer(viewer_id)

        try:
            answer = await self._answer(pc, offer_sdp, peer_address)
        except BaseException:
            await self.remove_viewer(viewer_id)
            raise

        async def give_up() -> None:
            if self.viewers.get(viewer_id) is pc:
                await self.remove_viewer(viewer_id)

        self._spawn(self._unless_connected(pc, f"viewer {viewer_id}", give_up))
        self.live.log.info("viewer %s watching", viewer_id)
        return viewer_id, answer

    async def remove_viewer(self, viewer_id: str) -> bool:
        pc = self.viewers.pop(viewer_id, None)
        if pc is None:
            return False
        self._on_viewer_left(self, viewer_id)
        await _close_peer_connection(pc, self.live)
        self.live.log.info("viewer %s left", viewer_id)
        return True

    async def close_gracefully(self, cause: StreamError) -> None:
        """Say `closing` on `control`, let the frame in the model come out, then close."""
        self._send(self.live.stop_input(cause))
        await self.live.settled()
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            if task is not asyncio.current_task():  # close() may run inside one of them
                task.cancel()
        try:
            await self.outputs.close()
            for viewer_id in list(self.viewers):
                await self.remove_viewer(viewer_id)
            await _close_peer_connection(self.pc, self.live)
        finally:  # whatever happened, the session ends and its slot is freed
            self.live.close()
            self._on_closed(self)

    # The data path

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._spawn(self._read_camera(track))

    async def _read_camera(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame, skipped = await newest_frame(track)
            except MediaStreamError:
                return
            await self.live.receive_video_frame(frame, skipped)

    async def _publish(self) -> None:
        while True:
            output = await self.live.next_output()
            message = self.live.session.output_message(output)
            if output.pixels is not None:
                to_yuv = partial(_video_planes, self._to_yuv420p, output.pixels)
                await self.outputs.publish(await self.live.lease.encoders.run(to_yuv))
            self.live.output_sent(output)
            # Frame metadata is advisory on WebRTC: skip it rather than queue it.
            backed_up = (
                self._channel is not None and self._channel.bufferedAmount > CONTROL_HIGH_WATER
            )
            if output.pixels is None or not backed_up:
                self._send(message)

    # Control

    async def _start(self, model_ready: asyncio.Event) -> None:
        self._ready = await self.live.start(model_ready)
        self._send_ready()
        self._expect_input_once_connected()

    def _expect_input_once_connected(self) -> None:
        """The handshake timeout starts once the model is warm and the peer connected:
        connecting has its own timeout (CONNECT_TIMEOUT_S)."""
        if self._ready is not None and self.pc.connectionState == "connected":
            self.live.expect_input()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CONTROL_CHANNEL:
            return
        self._channel = channel
        channel.on("message", self._on_control_message)
        channel.on("open", self._send_ready)
        self._send_ready()

    def _send_ready(self) -> None:
        """`ready` goes out once both the model is warm and `control` is open."""
        if self._ready is not None:
            self._send(self._ready)

    def _on_control_message(self, message: str | bytes) -> None:
        self._send(self.live.receive_text(message))

    def _send(self, message: Message) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(orjson.dumps(message).decode())

    # Lifecycle

    async def _on_connection_state(self) -> None:
        self.live.log.info("peer connection %s", self.pc.connectionState)
        self._expect_input_once_connected()
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def _close_when_expired(self) -> None:
        await self.close_gracefully(await self.live.until_expired())

    async def _unless_connected(
        self, pc: RTCPeerConnection, who: str, give_up: Callable[[], Awaitable[None]]
    ) -> None:
        """`give_up` on `pc` unless it connected within the connect timeout: a peer that
        never connects holds its sockets (and a session its slot) until then."""
        timeout = self.config.connect_timeout_s
        await asyncio.sleep(timeout)
        if pc.connectionState in ("new", "connecting"):  # failed and closed: gone already
            self.live.log.info("%s did not connect in %g s", who, timeout)
            await give_up()

    async def _answer(self, pc: RTCPeerConnection, offer_sdp: str, peer_address: str | None) -> str:
        """`pc`'s answer to the offer, bounded first (offers.py) in a thread: aiortc
        parses it on the event loop, and checks every candidate it lists."""
        offer_sdp, dropped = await asyncio.to_thread(bounded_offer, offer_sdp, peer_address)
        if dropped:
            self.live.log.info("dropped %d ICE candidate(s) of the offer", dropped)
        return await _answer(pc, offer_sdp, OutputTrack(self.outputs))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.live.log.error("peer task failed", exc_info=task.exception())
            asyncio.get_running_loop().create_task(self.close())


BAD_SDP_ERRORS = (
    ValueError,
    TypeError,
    AssertionError,
    AttributeError,
    IndexError,
    KeyError,
    RuntimeError,  # "coroutine raised StopIteration"
    InvalidStateError,  # an offer whose parts contradict aiortc's signalling state
)
"""What aiortc raises on malformed SDP, from parsing it or from answering it (found by
tests/realtime/test_fuzz_signalling.py): its parser asserts, indexes and looks up as it goes."""


def codecs_taken(kind: str) -> str:
    """The codecs aiortc sends and receives for `kind` ("video", "audio"), as an offer
    must name them: "VP8, H264 (packetization-mode=1, profile-level-id=42001f|42e01f)"."""
    fmtps: dict[str, dict[str, list[str]]] = {}
    for codec in RTCRtpSender.getCapabilities(kind).codecs:
        name = codec.mimeType.split("/")[1]
        if name == "rtx":  # retransmission, not a codec of its own
            continue
        fmtp = fmtps.setdefault(name, {})
        for key, value in codec.parameters.items():
            if key != "level-asymmetry-allowed" and str(value) not in fmtp.get(key, []):
                fmtp.setdefault(key, []).append(str(value))
    described = []
    for name, fmtp in fmtps.items():
        parameters = ", ".join(f"{key}={'|'.join(values)}" for key, values in fmtp.items())
        described.append(f"{name} ({parameters})" if parameters else name)
    return ", ".join(described)


async def _answer(pc: RTCPeerConnection, offer_sdp: str, track: OutputTrack) -> str:
    """The answer to `offer_sdp`, or BadOffer; the caller closes `pc` either way on failure."""
    try:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as error:  # no codec in common with one of its m-lines
            raise BadOffer(
                f"not a usable SDP offer: no codec in common ({error}); the server takes "
                f"video as {codecs_taken('video')}, and audio as {codecs_taken('audio')}",
                field="sdp",
            ) from None
        # The generated video goes back on the peer's own video m-line: every endpoint
        # sends or receives video (a camera, the output, or both).
        if not any(transceiver.kind == "video" for transceiver in pc.getTransceivers()):
            raise BadOffer(
                "not a usable SDP offer: it has no video m-line; the server sends and "
                f"receives video as {codecs_taken('video')}",
                field="sdp",
            )
        pc.addTrack(track)
        await pc.setLocalDescription(as_dtls_server(await pc.createAnswer(), offer_sdp))
    except BAD_SDP_ERRORS as error:
        detail = str(error) or type(error).__name__
        raise BadOffer(f"not a usable SDP offer: {detail}", field="sdp") from None
    return str(pc.localDescription.sdp)


def as_dtls_server(answer: RTCSessionDescription, offer_sdp: str) -> RTCSessionDescription:
    """`answer`, made to take the DTLS server role (`a=setup:passive`) where the offer lets
    the answerer choose (`actpass`; RFC 5763 allows either answer). aiortc as a DTLS client
    offers ECDHE-ECDSA suites only, which a peer with an RSA certificate (GStreamer's
    webrtcbin) cannot pick ("no shared cipher"); as the server it chooses from what the
    peer offers, and its own certificate is ECDSA. aiortc takes the role the local answer
    says, so no patch of aiortc is needed."""
    if "a=setup:actpass" not in offer_sdp:
        return answer  # the offerer chose its role; aiortc answered the other one
    sdp = answer.sdp.replace("a=setup:active", "a=setup:passive")
    return RTCSessionDescription(sdp=sdp, type=answer.type)


async def _close_peer_connection(pc: RTCPeerConnection, live: LiveSession) -> None:
    """aiortc's close() can fail half-way on a connection that a bad offer left half
    set up (and a second close() would then wait forever): log it, close once."""
    try:
        await pc.close()
    except Exception as error:
        live.log.warning("closing the peer connection failed: %s: %s", type(error).__name__, error)

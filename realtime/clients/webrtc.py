"""A WebRTC client: a synthetic camera out, the generated video and `control` messages in.

    camera = CameraTrack(pixels, fps=30)
    client = await RtcClient.offer("http://127.0.0.1:8000", camera=camera, model="invert")
    await client.update_params(delay_ms=50)
    pixels = await client.next_frame()
    await client.close()

Also speaks WHIP (`RtcClient.whip`, camera only) and WHEP (`RtcClient.whep`,
watch only). Tests and benchmarks use it; it stands for a phone app or OBS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import av
import orjson
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from frames.frame import Pixels
from frames.video import VIDEO_TIME_BASE, pixels_to_video_frame, video_frame_to_pixels
from realtime.clients.http import request
from realtime.clients.websocket import ServerError
from realtime.ice import IceServer, rtc_configuration
from session.protocol import (
    ErrorMessage,
    ParamsMessage,
    Ready,
    ServerMessage,
    params_update,
    parse_server_message,
)

MESSAGES_KEPT = 1000
"""Control messages kept unread; older ones are dropped, like a client that falls behind."""


class CameraTrack(MediaStreamTrack):
    """A camera that films `image` (which may be changed at any time) at `fps`."""

    kind = "video"

    def __init__(self, image: Pixels, fps: float = 30.0) -> None:
        super().__init__()
        self.image = image
        self.fps = fps
        self.frames_sent = 0
        self._started_at: float | None = None

    async def recv(self) -> Any:
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
        due = self._started_at + self.frames_sent / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        self.frames_sent += 1
        elapsed = time.perf_counter() - self._started_at
        return pixels_to_video_frame(self.image, round(elapsed / VIDEO_TIME_BASE))


class RtcClient:
    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.session_id: str | None = None
        self.location: str | None = None
        self.ready: Ready | None = None
        self._messages: asyncio.Queue[ServerMessage] = asyncio.Queue(MESSAGES_KEPT)
        self._video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._channel = pc.createDataChannel("control")
        self._channel.on("message", self._on_message)
        pc.on("track", self._on_track)

    @classmethod
    async def offer(
        cls,
        url: str,
        *,
        camera: CameraTrack | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        video_codec: str | None = None,
        api_key: str | None = None,
        token: str | None = None,
        ice_servers: Sequence[IceServer] = (),
    ) -> RtcClient:
        """POST /v1/webrtc/offer: send `camera` (if any), watch the output, wait for `ready`.
        `video_codec` ("VP8", "H264") offers that codec only."""
        client = cls._with_media(camera, receive=True, ice_servers=ice_servers)
        if video_codec is not None:
            client._prefer_codec(video_codec)
        async with client._closed_on_error():
            offer: dict[str, Any] = {"sdp": await client._local_offer(), "type": "offer"}
            if model is not None:
                offer["model"] = model
            if params is not None:
                offer["params"] = params
            if token is not None:
                offer["token"] = token
            answer, _ = await _post(
                f"{url}/v1/webrtc/offer", "application/json", orjson.dumps(offer), api_key
            )
            body = orjson.loads(answer)
            client.session_id = body["session_id"]
            await client._accept(body["sdp"])
            ready = await client._wait_for(Ready)
            assert isinstance(ready, Ready)
            client.ready = ready
        return client

    @classmethod
    async def whip(
        cls, url: str, camera: CameraTrack, *, model: str | None = None, api_key: str | None = None
    ) -> RtcClient:
        """WHIP ingest: send `camera` only. `location` is the resource to DELETE."""
        client = cls._with_media(camera, receive=False, ice_servers=())
        async with client._closed_on_error():
            query = f"?model={model}" if model else ""
            sdp = (await client._local_offer()).encode()
            answer, location = await _post(f"{url}/v1/whip{query}", "application/sdp", sdp, api_key)
            client.location = location
            client.session_id = location.rsplit("/", 1)[-1]
            await client._accept(answer.decode())
        return client

    @classmethod
    async def whep(cls, url: str, session_id: str, *, api_key: str | None = None) -> RtcClient:
        """WHEP egress: watch session `session_id`'s output."""
        client = cls._with_media(None, receive=True, ice_servers=())
        async with client._closed_on_error():
            sdp = (await client._local_offer()).encode()
            whep_url = f"{url}/v1/whep/{session_id}"
            answer, location = await _post(whep_url, "application/sdp", sdp, api_key)
            client.location = location
            await client._accept(answer.decode())
        return client

    async def send_params(self, **params: Any) -> None:
        self._channel.send(orjson.dumps(params_update(params)).decode())

    async def update_params(self, **params: Any) -> dict[str, Any]:
        """Update params over `control`; returns all current values or raises ServerError."""
        await self.send_params(**params)
        reply = await self._wait_for(ParamsMessage, ErrorMessage)
        if isinstance(reply, ErrorMessage):
            raise ServerError(reply)
        assert isinstance(reply, ParamsMessage)
        return dict(reply.params)

    async def receive_message(self) -> ServerMessage:
        """The next `control` message: frame metadata, a params answer or an error."""
        return await self._messages.get()

    async def next_frame(self) -> Pixels:
        """The next frame of the generated video."""
        frame = await (await self._video).recv()
        assert isinstance(frame, av.VideoFrame)
        return video_frame_to_pixels(frame)

    async def close(self) -> None:
        await self.pc.close()

    @contextlib.asynccontextmanager
    async def _closed_on_error(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            await self.close()
            raise

    @classmethod
    def _with_media(
        cls, camera: CameraTrack | None, *, receive: bool, ice_servers: Sequence[IceServer]
    ) -> RtcClient:
        client = cls(RTCPeerConnection(rtc_configuration(ice_servers)))
        if camera is not None:
            direction = "sendrecv" if receive else "sendonly"
            client.pc.addTransceiver(camera, direction=direction)
        elif receive:
            client.pc.addTransceiver("video", direction="recvonly")
        return client

    @property
    def video_codec(self) -> str | None:
        """The video codec the answer chose: the first payload type of its video m-line."""
        description = self.pc.remoteDescription
        if description is None:
            return None
        lines = description.sdp.splitlines()
        media = next(line for line in lines if line.startswith("m=video"))
        payload_type = media.split()[3]
        rtpmap = next(line for line in lines if line.startswith(f"a=rtpmap:{payload_type} "))
        return rtpmap.split()[1].split("/")[0]

    def _prefer_codec(self, name: str) -> None:
        wanted = f"video/{name}".lower()
        codecs = RTCRtpSender.getCapabilities("video").codecs
        chosen = [codec for codec in codecs if codec.mimeType.lower() in (wanted, "video/rtx")]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(chosen)

    async def _local_offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def _accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def _wait_for(self, *kinds: type[ServerMessage]) -> ServerMessage:
        """The next message of one of `kinds`; the others stay queued, in order."""
        skipped: list[ServerMessage] = []
        try:
            while not isinstance(message := await self._messages.get(), kinds):
                skipped.append(message)
            return message
        finally:
            for message in skipped:  # back at the end: their order among themselves is kept
                self._keep(message)

    def _on_message(self, data: str | bytes) -> None:
        self._keep(parse_server_message(orjson.loads(data)))

    def _keep(self, message: ServerMessage) -> None:
        if self._messages.full():
            self._messages.get_nowait()
        self._messages.put_nowait(message)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and not self._video.done():
            self._video.set_result(track)


async def _post(
    url: str, content_type: str, body: bytes, api_key: str | None = None
) -> tuple[bytes, str]:
    """POST and return the body and Location; an error answer raises ServerError."""
    return await request("POST", url, body, content_type, api_key)

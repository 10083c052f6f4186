"""The synthetic cameras: a drifting pattern, paced at `fps`, over the WebSocket
(JPEGs through StreamClient) or WebRTC (a video track through RtcClient)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from frames.codecs import encode_image
from frames.frame import Pixels
from realtime.bench.config import BenchConfig
from realtime.bench.records import SessionRecord
from realtime.clients.webrtc import CameraTrack, RtcClient
from realtime.clients.websocket import StreamClient

CAMERA_FRAMES = 30
"""Distinct synthetic frames each camera cycles through (a drifting pattern)."""


def camera_pixels(width: int, height: int, count: int = CAMERA_FRAMES) -> list[Pixels]:
    """`count` frames of a drifting colour pattern with a fixed texture: every frame
    differs, and JPEG and VP8 have edges to encode, as with a real camera."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.random.default_rng(0).normal(0, 12, (height, width, 1)).astype(np.float32)
    frames = []
    for index in range(count):
        phase = 2 * np.pi * index / count
        channels = [
            127.5
            + 100
            * np.sin(x / max(width, 1) * 4 * np.pi + phase + c)
            * np.cos(y / max(height, 1) * 3 * np.pi - phase + c)
            for c in range(3)
        ]
        image = np.stack(channels, axis=-1) + np.roll(texture, index * 4, axis=1)
        frames.append(image.clip(0, 255).astype(np.uint8))
    return frames


def camera_jpegs(config: BenchConfig) -> list[bytes]:
    """What each WebSocket camera sends, in a loop."""
    return [
        encode_image(pixels, "jpeg", config.quality)
        for pixels in camera_pixels(config.width, config.height)
    ]


class TimedCamera(CameraTrack):
    """A CameraTrack that cycles through `frames` and notes when it hands each on."""

    def __init__(self, frames: Sequence[Pixels], fps: float, record: SessionRecord) -> None:
        super().__init__(frames[0], fps)
        self.frames = frames
        self.record = record

    async def recv(self) -> Any:
        self.image = self.frames[self.frames_sent % len(self.frames)]
        frame = await super().recv()
        self.record.frames_sent = self.frames_sent
        self.record.sent_at[self.frames_sent] = time.perf_counter()
        return frame


async def paced_sends(
    record: SessionRecord, frames: Sequence[bytes], client: StreamClient, fps: float
) -> None:
    """A WebSocket camera: frame k is due at start + k / fps, whatever came back.
    A send that returns after the next slot skips the missed slots (`late_frames`)."""
    started = time.perf_counter()
    slot = 0
    while True:
        if fps > 0:
            due = started + slot / fps
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        number = record.frames_sent + 1
        record.sent_at[number] = time.perf_counter()
        await client.send_frame(frames[number % len(frames)])
        record.frames_sent = number
        slot += 1
        if fps > 0:
            behind = int((time.perf_counter() - started) * fps) - slot
            if behind > 0:
                record.late_frames += behind
                slot += behind
        else:
            await asyncio.sleep(0)  # let the reader run


async def read_websocket(client: StreamClient, record: SessionRecord) -> None:
    with contextlib.suppress(ConnectionClosed):
        while record.note(await client.receive()):
            pass


async def read_control(client: RtcClient, record: SessionRecord) -> None:
    while record.note(await client.receive_message()):
        pass


async def read_video(client: RtcClient, record: SessionRecord) -> None:
    """Takes every frame of the output video, as a player would."""
    with contextlib.suppress(Exception):  # MediaStreamError once the connection closes
        while True:
            await client.next_frame()
            record.video_frames.append(time.perf_counter())


@dataclass(slots=True)
class Camera:
    """One connected session: its record, its running tasks and how to close it."""

    record: SessionRecord
    tasks: list[asyncio.Task[None]]
    close: Callable[[], Awaitable[None]]
    start: Callable[[], None] | None = None
    """WebSocket: starts the paced sends (the WebRTC camera runs from connection)."""


async def open_websocket_camera(config: BenchConfig, frames: Sequence[bytes]) -> Camera:
    client = await StreamClient.connect(
        websocket_url(config.url), model=config.model, api_key=config.api_key
    )
    record = SessionRecord(model=client.ready.model)
    if config.params:
        await client.update_params(**config.params)
    tasks = [asyncio.create_task(read_websocket(client, record))]

    def start() -> None:
        tasks.append(asyncio.create_task(paced_sends(record, frames, client, config.fps)))

    return Camera(record, tasks, client.close, start)


async def open_webrtc_camera(config: BenchConfig, frames: Sequence[Pixels]) -> Camera:
    record = SessionRecord()
    camera = TimedCamera(frames, config.fps, record)
    client = await RtcClient.offer(
        config.url,
        camera=camera,
        model=config.model,
        params=dict(config.params) or None,
        api_key=config.api_key,
    )
    record.model = client.ready.model if client.ready is not None else config.model
    tasks = [
        asyncio.create_task(read_control(client, record)),
        asyncio.create_task(read_video(client, record)),
    ]
    return Camera(record, tasks, client.close)


async def open_cameras(config: BenchConfig) -> list[Camera]:
    """Connect every session at once; if one fails, close the others and raise."""
    if config.transport == "webrtc":
        pixels = camera_pixels(config.width, config.height)
        openings = [open_webrtc_camera(config, pixels) for _ in range(config.sessions)]
    else:
        jpegs = camera_jpegs(config)
        openings = [open_websocket_camera(config, jpegs) for _ in range(config.sessions)]
    results = await asyncio.gather(*openings, return_exceptions=True)
    cameras = [result for result in results if isinstance(result, Camera)]
    failure = next((result for result in results if isinstance(result, BaseException)), None)
    if failure is not None:
        await close_cameras(cameras)
        raise failure
    return cameras


async def close_cameras(cameras: Sequence[Camera]) -> None:
    for camera in cameras:
        for task in camera.tasks:
            task.cancel()
    for camera in cameras:
        with contextlib.suppress(Exception):
            await camera.close()
    await asyncio.gather(
        *(task for camera in cameras for task in camera.tasks), return_exceptions=True
    )


def websocket_url(url: str) -> str:
    """The ws(s):// URL of the server at http(s) `url`."""
    scheme, rest = url.split("://", 1) if "://" in url else ("http", url)
    return f"{'wss' if scheme in ('https', 'wss') else 'ws'}://{rest}"

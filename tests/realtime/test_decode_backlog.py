"""The WebRTC decoder's backlog: bounded, dropping to the next keyframe, and installed in
aiortc's receiver (a private attribute: this is what checks it on an aiortc upgrade)."""

from __future__ import annotations

import asyncio
import threading

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.codecs.h264 import H264Encoder, h264_depayload
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from frames.samples import gradient_image
from frames.video import pixels_to_video_frame
from realtime.clients.webrtc import CameraTrack
from realtime.server.decode_backlog import (
    MAX_WAITING,
    DecodeBacklog,
    bound_decode_backlog,
    is_keyframe,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)


def encoded_frames(
    codec: RTCRtpCodecParameters, count: int, keyframes: set[int]
) -> list[JitterFrame]:
    """A camera's frames as aiortc's receiver reassembles them: its own encoder's RTP
    payloads, depayloaded. The first frame and those in `keyframes` are keyframes."""
    encoder, depayload = (
        (Vp8Encoder(), vp8_depayload) if codec is VP8 else (H264Encoder(), h264_depayload)
    )
    frames = []
    for index in range(count):
        frame = pixels_to_video_frame(gradient_image(64, 64, seed=index), index * 3000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=index in keyframes)
        frames.append(JitterFrame(b"".join(depayload(p) for p in payloads), timestamp))
    return frames


@pytest.mark.parametrize("codec", [VP8, H264], ids=["VP8", "H264"])
def test_keyframes_are_told_from_the_frames_coded_against_others(
    codec: RTCRtpCodecParameters,
) -> None:
    frames = encoded_frames(codec, 6, keyframes={4})
    assert [is_keyframe(codec.name, f.data) for f in frames] == [
        True,
        False,
        False,
        False,
        True,
        False,
    ]


def test_an_overflowing_backlog_drops_to_the_next_keyframe_and_asks_for_one() -> None:
    frames = encoded_frames(VP8, 9, keyframes={6})
    ask = threading.Event()
    dropped: list[int] = []
    backlog = DecodeBacklog(ask, dropped.append)
    for frame in frames[: MAX_WAITING + 1]:  # no decoder takes them: the last overflows
        backlog.put((VP8, frame))
    assert backlog.qsize() == 0 and dropped == [MAX_WAITING + 1] and ask.is_set()
    ask.clear()
    for frame in frames[MAX_WAITING + 1 : 6]:  # coded against dropped frames: dropped too
        backlog.put((VP8, frame))
    assert backlog.qsize() == 0 and sum(dropped) == 6 and not ask.is_set()
    for frame in frames[6:]:  # the keyframe and what follows it are kept
        backlog.put((VP8, frame))
    assert backlog.qsize() == 3 and sum(dropped) == 6
    decoder = Vp8Decoder()  # what is kept decodes, in order
    decoded = [decoder.decode(backlog.get()[1]) for _ in range(3)]
    assert all(len(frames) == 1 and isinstance(frames[0], av.VideoFrame) for frames in decoded)


def test_a_keyframe_overtakes_a_full_backlog() -> None:
    frames = encoded_frames(VP8, 5, keyframes={3})
    dropped: list[int] = []
    backlog = DecodeBacklog(threading.Event(), dropped.append)
    for frame in frames[:3]:
        backlog.put((VP8, frame))
    backlog.put((VP8, frames[3]))  # decodes alone: what waits is older
    backlog.put((VP8, frames[4]))
    assert backlog.qsize() == 2 and dropped == [3]
    backlog.put(None)  # the end of the stream is never dropped
    assert backlog.qsize() == 3


@pytest.mark.asyncio
async def test_the_receivers_decoder_thread_takes_the_bounded_backlog() -> None:
    sender, receiver_pc = RTCPeerConnection(), RTCPeerConnection()
    sender.addTrack(CameraTrack(gradient_image(64, 64), fps=15))
    installed: list[RTCRtpReceiver] = []
    reading: list[asyncio.Future[None]] = []
    arrived = asyncio.Event()

    @receiver_pc.on("track")
    def on_track(track: object) -> None:
        receiver = next(
            t.receiver for t in receiver_pc.getTransceivers() if t.receiver.track is track
        )
        bound_decode_backlog(receiver, lambda count: None)
        installed.append(receiver)

        async def read() -> None:
            await track.recv()  # type: ignore[attr-defined]
            arrived.set()

        reading.append(asyncio.ensure_future(read()))

    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver_pc.setRemoteDescription(sender.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender.setRemoteDescription(receiver_pc.localDescription)
        await asyncio.wait_for(arrived.wait(), 20)
        decoder_thread = installed[0]._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
        assert isinstance(decoder_thread._args[1], DecodeBacklog)
    finally:
        await sender.close()
        await receiver_pc.close()

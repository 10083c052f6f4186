"""LiveSession: a Session bound to its worker on the event loop.

Every transport drives the data path through this one class, so the path
reads the same whichever way frames arrive:

    receive_frame: the newest undecoded image (an older one waiting is dropped) ->
    receive_*:     decode, and the control image (off the loop, one at a time) ->
                   session.offer_frame -> dispatch
    dispatch:      session.next_job -> worker.submit
    worker thread: model -> _on_done (back on the loop) -> session output slot
    next_output:   wait for the slot -> encode (off the loop, WebSocket only) -> transport sends
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import NamedTuple, TypeVar, cast

import av

from frames.annotators import Annotator, annotator_for
from frames.codecs import BadImage, ImageFormat
from frames.device_codec import on_host
from frames.frame import ControlImage, DevicePixels, Frame, Pixels
from frames.video import VideoFrameScaler
from models.parts import NO_CONTROL
from realtime.server.lease import Lease
from session.errors import InvalidParams, StreamError
from session.jobs import JobResult
from session.limits import SessionLimits
from session.protocol import Hop, MessageType
from session.session import Message, Output, Session, SessionState
from session.slots import LatestSlot

T = TypeVar("T")

UNDECODED_BYTES = 16 * 2**20
"""The most bytes of images a session keeps waiting for decoding; the newest image
is kept whatever its size (up to the server's message cap)."""


class _Undecoded(NamedTuple):
    """An image as it arrived: its bytes, when, and the client's tag for it."""

    data: bytes
    received_at: float
    tag: object


class LiveSession:
    """Create with the lease ServerState.admit gave; `close` once when the transport ends."""

    def __init__(
        self,
        lease: Lease,
        limits: SessionLimits,
        *,
        text_input: bool = False,
        buffered_frames: int = 1,
    ) -> None:
        self.session = Session(
            lease.session_id,
            lease.worker.entry.info,
            limits,
            time.perf_counter(),
            text_input=text_input,
            buffered_frames=buffered_frames,
        )
        self.session.pin(lease.worker.name, lease.worker.device)
        self.lease = lease
        self.worker = lease.worker
        self.meter = lease.meter
        self._loop = asyncio.get_running_loop()
        self._output_ready = asyncio.Event()
        self._settled = asyncio.Event()
        self._undecoded: LatestSlot[_Undecoded] = LatestSlot(buffered_frames)
        """The newest images not yet decoded."""
        self._decoder: asyncio.Task[None] | None = None
        self._scaler: VideoFrameScaler | None = None
        """Converts a WebRTC session's video frames, one at a time."""
        self._annotators: dict[str, Annotator] = {}
        """The session's control annotators, made on first use (a face tracker keeps
        state between frames); only the decode hop, one frame at a time, uses them."""
        self._released = False
        self._deadlines_moved = asyncio.Event()
        self.log = self.session.log
        lease.sessions[self.id] = self

    @property
    def id(self) -> str:
        return self.session.id

    async def start(self, model_ready: asyncio.Event) -> Message:
        """Wait until the pinned model is warm; returns the `ready` message."""
        await model_ready.wait()
        ready = self.session.model_ready(time.perf_counter())
        self._dispatch()  # a type-to-image session's first image
        return ready

    def receive_frame(
        self, data: bytes, reply: Callable[[Message], Awaitable[None]], tag: object = None
    ) -> None:
        """An encoded image arrived; `reply` sends the `bad_frame` error if it is one.
        `tag` travels with its output (`Frame.tag`).

        Returns at once, so the transport goes on reading: images are decoded one at
        a time in the background, and one that arrives meanwhile waits in a latest
        slot, where a newer one replaces it (counted as dropped). A client that sends
        faster than the server decodes thus loses frames, not latency: they never
        pile up unread in the socket's buffers.
        """
        now = time.perf_counter()
        if self._undecoded.put(_Undecoded(data, now, tag)) is not None:
            self.session.skip_frames(1, now)
        # A slot of several (fal's max_buffering) holds what its bytes allow.
        while (
            len(self._undecoded) > 1
            and sum(len(image.data) for image in self._undecoded) > UNDECODED_BYTES
        ):
            self._undecoded.take()
            self.session.skip_frames(1, now)
        if self._decoder is None or self._decoder.done():
            self._decoder = asyncio.create_task(self._decode_images(reply))

    async def _decode_images(self, reply: Callable[[Message], Awaitable[None]]) -> None:
        while (image := self._undecoded.take()) is not None:
            error = await self._receive(self._decoding(image.data), image.received_at, image.tag)
            if error is not None:
                await reply(error)

    def _decoding(self, data: bytes) -> Callable[[], Pixels | DevicePixels]:
        """Decoding `data` to the model's size, within the session's image limits."""
        info, limits = self.session.model, self.session.limits
        return partial(
            self.worker.codec.decode,
            data,
            info.width,
            info.height,
            max_size=limits.max_image_size,
            max_pixels=limits.max_image_pixels,
        )

    async def receive_video_frame(self, frame: av.VideoFrame, skipped: int = 0) -> None:
        """A decoded video frame arrived, overtaking `skipped` older ones."""
        now = time.perf_counter()
        self.session.skip_frames(skipped, now)
        if self._scaler is None:
            self._scaler = VideoFrameScaler(self.session.model.width, self.session.model.height)
        await self._receive(partial(self._scaler, frame), now)

    async def _receive(
        self, decode: Callable[[], Pixels | DevicePixels], received_at: float, tag: object = None
    ) -> Message | None:
        index = self.session.number_frame(received_at)
        control = str(self.session.params.values.get("control", NO_CONTROL))
        started = time.perf_counter()  # a wait before decoding counts in `queue`, not here
        try:
            decoded = await self.lease.decoders.run(
                partial(self._unless_closed, self._decode_and_annotate, decode, control)
            )
        except BadImage as error:
            self.log.info("bad frame %d: %s", index, error)
            reply = self.session.reject_frame(index, str(error))
            self.meter.update(self.session)
            return reply
        pixels, control_image, control_ms = decoded
        decode_ms = (time.perf_counter() - started) * 1000 - control_ms
        timings = {Hop.DECODE: decode_ms, Hop.CONTROL: control_ms}
        # A GPU codec's tensor travels the session core as opaque pixels, to the model.
        frame = Frame(cast(Pixels, pixels), index, received_at, timings, tag, control_image)
        self.session.offer_frame(frame)
        self.meter.update(self.session)
        self._dispatch()
        return None

    def _unless_closed(self, work: Callable[..., T], *args: object) -> T:
        """On a decode thread: do `work`, unless the session closed while the image waited
        for a thread (cancelling the wait does not stop a thread that has just taken it)."""
        if self.session.state is SessionState.CLOSED:
            raise asyncio.CancelledError
        return work(*args)

    def _decode_and_annotate(
        self, decode: Callable[[], Pixels | DevicePixels], control: str
    ) -> tuple[Pixels | DevicePixels, ControlImage | None, float]:
        """On a decode thread: the frame's pixels, and the `control` image computed from
        them (none for "none") with the milliseconds that took (the `control` hop)."""
        pixels = decode()
        if control == NO_CONTROL:
            return pixels, None, 0.0
        started = time.perf_counter()
        annotator = self._annotators.get(control)
        if annotator is None:
            annotator = self._annotators[control] = annotator_for(control)
        image = ControlImage(control, annotator(on_host(pixels)))
        return pixels, image, (time.perf_counter() - started) * 1000

    async def set_reference(self, data: bytes | None) -> None:
        """A new reference image (encoded, as a frame is: the same limits), or None to
        clear it: the next frame into the model takes it. InvalidParams, naming
        `reference`, when the model takes none or the image cannot be decoded."""
        pixels = None
        if data is not None:
            self.session.check_takes_reference()  # before decoding what it cannot use
            decode = partial(self._unless_closed, self._decoding(data))
            try:
                pixels = on_host(await self.lease.decoders.run(decode))
            except BadImage as error:
                raise InvalidParams(f"reference: {error}", field="reference") from None
        self.session.set_reference(pixels, time.perf_counter())

    def receive_text(self, data: str | bytes) -> Message:
        """A control message arrived; returns the reply."""
        reply = self.session.receive_text(data, time.perf_counter())
        if reply["type"] == MessageType.ERROR:
            self.log.info("%s", reply["message"])
        self._dispatch()  # a type-to-image request
        return reply

    def receive_params(self, changes: Mapping[str, object]) -> None:
        """Params that came with a request (fal's carry them with the image): applied,
        or InvalidParams raised and nothing changed."""
        self.session.update_params(changes, time.perf_counter())

    def refuse_frame(self, error: StreamError) -> Message:
        """The image of a request that was refused: counted as a bad frame."""
        reply = self.session.refuse_frame(error, time.perf_counter())
        self.meter.update(self.session)
        return reply

    def request_image(self, tag: object = None) -> None:
        """Ask for one image from the params alone (`Session.request_image`)."""
        self.session.request_image(time.perf_counter(), tag)
        self.meter.update(self.session)
        self._dispatch()

    async def next_output(self) -> Output:
        """Wait for the newest output (a frame or a model error) and take it; call
        `output_sent` once the transport has sent it."""
        while (output := self.session.next_output()) is None:
            self._output_ready.clear()
            await self._output_ready.wait()
        return output

    def output_sent(self, output: Output) -> None:
        self.session.output_sent(output)
        self.meter.sent(output)
        self.meter.update(self.session)
        self._note_settled()

    def expect_input(self) -> None:
        """The client can send from now on (`Session.expect_input`): its handshake
        timeout starts."""
        self.session.expect_input(time.perf_counter())
        self._deadlines_moved.set()

    async def until_expired(self) -> StreamError:
        """Wait until the session passes one of its limits (handshake, idle, duration);
        returns it."""
        while True:
            now = time.perf_counter()
            if (cause := self.session.expiry(now)) is not None:
                return cause
            deadline = self.session.next_deadline()
            self._deadlines_moved.clear()
            with contextlib.suppress(TimeoutError):  # None: no limit, until one is set
                timeout = None if deadline is None else deadline - now
                await asyncio.wait_for(self._deadlines_moved.wait(), timeout)

    def stop_input(self, cause: StreamError) -> Message:
        """A graceful end begins: no more frames. Returns the `closing` message to send;
        then await `settled`."""
        closing = self.session.stop_input(cause)
        self._note_settled()
        return closing

    async def settled(self) -> None:
        """Wait until the frame in the model has come out and the transport sent it."""
        await self._settled.wait()

    async def encode(self, output: Output) -> tuple[Message, bytes | None]:
        """The encode hop: the output's message and, for a frame, its image in the
        session's output format."""
        if output.pixels is None:
            return self.session.output_message(output), None
        started = time.perf_counter()
        image_format: ImageFormat = output.params["output_format"]  # type: ignore[assignment]
        quality = int(output.params["output_quality"])
        encode = partial(self.worker.codec.encode, output.pixels, image_format, quality)
        data = await self.lease.encoders.run(encode)
        return self.session.output_message(output, (time.perf_counter() - started) * 1000), data

    def close(self) -> None:
        self.lease.sessions.pop(self.id, None)
        if undecoded := self._undecoded.clear():  # arrived, never decoded: dropped
            self.session.skip_frames(undecoded, time.perf_counter())
        if self._decoder is not None:
            self._decoder.cancel()  # its frame in the decode hop counts as dropped
        self.session.close()
        self._release_when_closed()

    def _dispatch(self) -> None:
        job = self.session.next_job()
        if job is not None:
            self.worker.submit(job, self._on_done_threadsafe)

    def _on_done_threadsafe(self, result: JobResult) -> None:
        # RuntimeError: the loop is closed, the server is shutting down.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_done, result)

    def _on_done(self, result: JobResult) -> None:
        if result.pixels is not None:
            self.session.finish_job(result.pixels, result.started_at, result.model_ms)
        else:
            self.session.fail_job(result.error or "the model returned no output", result.code)
        self._output_ready.set()
        self._note_settled()
        self._release_when_closed()
        self._dispatch()

    def _note_settled(self) -> None:
        if self.session.is_settled:
            self._settled.set()
        else:
            self._settled.clear()

    def _release_when_closed(self) -> None:
        if self.session.state is SessionState.CLOSED and not self._released:
            self._released = True
            stats = self.session.stats
            # Logged once the model gave back its last frame, so the counts are final.
            self.log.info(
                "closed (%d frames in, %d out, %d dropped, %d bad, %d failed)",
                stats.frames_received,
                stats.frames_sent,
                self.session.dropped_frames,
                stats.bad_frames,
                stats.failed_frames,
            )
            self.worker.forget(self.id)
            self.meter.update(self.session)
            self.lease.release()

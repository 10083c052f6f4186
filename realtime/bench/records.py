"""SessionRecord: what one simulated camera sent and received."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from realtime.clients.websocket import FrameOutput
from session.protocol import Closing, ErrorMessage, FrameMessage


@dataclass(slots=True)
class SessionRecord:
    """What one simulated camera sent and received; times are perf_counter seconds."""

    sent_at: dict[int, float] = field(default_factory=dict)
    frames_sent: int = 0
    late_frames: int = 0
    """Frame slots the camera missed because sending had not returned in time."""
    received: list[tuple[float, float]] = field(default_factory=list)
    """(received at, latency in seconds) of each output."""
    video_frames: list[float] = field(default_factory=list)
    """WebRTC: when each frame of the output video arrived."""
    dropped_frames: int = 0
    errors: int = 0
    model: str | None = None

    def output(self, source_frame: int, dropped_frames: int) -> None:
        now = time.perf_counter()
        sent = self.sent_at.get(source_frame)
        if sent is not None:
            self.received.append((now, now - sent))
            for number in [n for n in self.sent_at if n <= source_frame]:
                del self.sent_at[number]  # outputs come in increasing source_frame order
        self.dropped_frames = max(self.dropped_frames, dropped_frames)

    def note(self, message: object) -> bool:
        """Count a message from the server (an output over either transport, an error);
        False once it says the session is closing."""
        if isinstance(message, FrameMessage | FrameOutput):
            self.output(message.source_frame, message.dropped_frames)
        elif isinstance(message, ErrorMessage):
            self.errors += 1
        return not isinstance(message, Closing)

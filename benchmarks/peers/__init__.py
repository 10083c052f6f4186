"""Peers, same work, same run: ours against an aiortc-example passthrough and fastrtc, over WebRTC.

    .venv/bin/python -m benchmarks.peers [--duration 60] [--servers ours,aiortc,fastrtc]

One client, the same for every server: an aiortc peer connection (VP8) whose
camera films 512x512 at 30 fps and paints each frame's index into the image as
a barcode (two rows of 16 blocks of 32x32 px, black or white: the index's 16
bits and their complement, which checks the reading). The receiver reads the
index back from each frame it gets, so a frame's latency is exact: the time it
came back minus the time the camera handed it to the encoder. Each server runs
in its own process on a free loopback port, one after another:

- ours: `realtime serve --model invert --ice-address 127.0.0.1` (the client
  inverts the pixels back before reading); invert works at 256x256, so it
  resizes each frame and sends 256x256 back;
- aiortc-example: benchmarks/peers/aiortc_example_server.py, a passthrough
  written the way aiortc's examples/server/server.py is (a MediaStreamTrack
  returning `await self.track.recv()`, over a MediaRelay and aiortc's default,
  unbounded receive queue); it sends the decoded 512x512 frames back as they came;
- fastrtc: benchmarks/peers/fastrtc_server.py, `Stream(handler=lambda frame:
  frame, modality="video", mode="send-receive")` on FastAPI under uvicorn.

Their code is not in the project: the benchmark makes a venv of its own (default
~/.cache/realtime-peers/venv, `--peer-venv`) and installs aiortc, aiohttp and
fastrtc into it from PyPI; if fastrtc does not install it is skipped, with a
note. Then it re-runs itself inside tests/loopback-only (a network namespace
holding only `lo`, where the machine allows one) for the measurement, and every
peer connection has no ICE servers and host candidates on 127.0.0.1 only.

Latency percentiles are over the frames sent after `--warmup` seconds (the
whole run after the warm-up), plus the median of the last 10 s, to show
drift. A frame whose index never came back within `--grace` seconds of the end
is lost. Server CPU is the utime+stime of the server process and its
descendants (from /proc) over the same window, per frame delivered in it.

The package, by concept: `barcode` (the camera and reading its frames back),
`servers` (the peer venv and each server's process), `measure` (one run and its
row), `__main__` (every server in turn, the table). The two peer servers are
standalone scripts run under the peer venv's python, never imported.
"""

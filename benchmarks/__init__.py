"""The benchmarks: each prints Markdown tables; docs/benchmarks.md holds the recorded ones.

Each runs as a module from the repository root, `python -m benchmarks.NAME --help`:

- `stream`: each model end to end through a real server: closed loop and a 30 fps camera.
- `codecs`: JPEG decode and encode, simplejpeg against Pillow.
- `video_codecs`: the CPU cost of WebRTC video encoding (VP8, H.264) per frame.
- `overhead`: the server's CPU per frame with `invert`, against the codec floor.
- `backpressure`: a model slower than the camera, fed at 30 and 60 fps.
- `concurrency`: 1 to 64 cameras at once.
- `batching`: aggregate fps with cross-session batching on and off.
- `soak`: minutes of session churn against one server, watching it for leaks.
- `models`: each diffusion family's ms per frame in-process, random weights.
- `peers`: ours against an aiortc-example passthrough and fastrtc, over WebRTC.
- `cluster_sim`: up to 1,000 GPUs simulated: routing policies, autoscaling, warm pools.

Servers run through `realtime.bench.harness.running_server`; tables print through
`realtime.bench.table`.
"""

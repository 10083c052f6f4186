"""`realtime bench`: simulated cameras against a server, measured at the client.

    config = BenchConfig("http://127.0.0.1:8000", sessions=4, fps=30, duration_s=10)
    report = await run_bench(config)
    print(markdown_table(report))

Each session is a camera that paces itself at `fps` and never waits for an
output before sending the next frame (the server keeps the newest and drops
the rest), while a reader takes every output as it comes. Over the WebSocket
the camera sends JPEGs (`realtime.clients.websocket.StreamClient`); over WebRTC it is a
video track (`realtime.clients.webrtc`). The measuring window opens once every
session is `ready` (and `warmup_s` later); outputs received in it give the fps, the latencies and,
with the server's `process_cpu_seconds_total` from /metrics at both ends of
the window, the server's CPU seconds per output frame.

Latency is from sending a source frame to receiving its output. Over the
WebSocket every output names its `source_frame`. WebRTC video carries no frame
number, so the camera track notes when it hands frame N to its encoder, and
the latency ends when the `frame` metadata for `source_frame` N arrives on
`control`: the server numbers video frames in the order it decodes them, so a
frame lost in transit would shift the count (rare on a LAN; the report's
`server.frames_received` against `frames_sent` shows it), and the server sends
that metadata as it hands the output to its video encoder, so the output's
own encoding and trip back are not in it.

The load generator, by concept:

- `config`: what a run asks for (`BenchConfig`).
- `camera`: the synthetic cameras, paced, over either client.
- `records`: what each camera sent and received.
- `scrape`: the server's /metrics (CPU, memory, frames, model calls).
- `stats`: percentiles and Jain's fairness index.
- `report`: the summaries, as a Markdown table or JSON.
- `run`: `run_bench`, the measuring window and its progress line.
- `harness`: a `realtime serve` child process (also used by the tests and benchmarks).
- `table`: the Markdown table every benchmark prints.
"""

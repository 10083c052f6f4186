"""The I/O side, in rooms:

- `realtime.server`: the Starlette app, transports, auth, metrics, workers, shutdown.
- `realtime.clients`: Python clients for the WebSocket and WebRTC transports.
- `realtime.bench`: the load generator and the child-process server harness.
- `realtime.cli`: the `realtime` command, a thin layer over the three.

`realtime.ice` is shared by the server and the WebRTC client.
"""

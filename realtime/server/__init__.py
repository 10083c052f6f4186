"""The server: the Starlette app and its lifespan, the transports (WebSocket, WebRTC
with WHIP/WHEP), auth, metrics, admission and drain, the model worker threads, and
the uvicorn server that stops in order.

Transports are thin adapters: they feed events into a `session.Session` through
`realtime.server.live_session.LiveSession` and send what comes out.
"""

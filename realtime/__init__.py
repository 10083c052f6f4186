"""The server's edges: the Starlette app, its transports, the CLI and the client.

Transports are thin adapters: they feed events into a `session.Session`
through `realtime.live_session.LiveSession` and send what comes out.
"""

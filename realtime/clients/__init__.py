"""Python clients of the server: `websocket.StreamClient` (the native WebSocket
protocol) and `webrtc.RtcClient` (an aiortc peer), speaking the wire vocabulary
of `session.protocol`."""

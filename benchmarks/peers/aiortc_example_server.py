"""A passthrough WebRTC server in the style of aiortc's examples/server/server.py.

    PEER_VENV/bin/python benchmarks/peers/aiortc_example_server.py --port 8080

Run by `python -m benchmarks.peers` with the peer venv's python (aiortc and
aiohttp from PyPI), never with the project's. Written for the benchmark, not
copied: the shape of the example is kept (an aiohttp POST /offer, a MediaRelay, a
MediaStreamTrack whose recv() awaits the next frame of the relayed camera and
returns it), with no transform applied and no draining of the receive queue.
Loopback only: no ICE servers (aiortc would otherwise use a public STUN
server) and host candidates on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aioice.ice
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from av.frame import Frame
from av.packet import Packet

# aioice gathers on every interface but loopback; offer 127.0.0.1 only.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

peer_connections: set[RTCPeerConnection] = set()
relay = MediaRelay()


class VideoTransformTrack(MediaStreamTrack):
    """The camera's frames, as they come: the example's transform="none"."""

    kind = "video"

    def __init__(self, track: MediaStreamTrack) -> None:
        super().__init__()
        self.track = track

    async def recv(self) -> Frame | Packet[Any]:
        frame = await self.track.recv()
        return frame


async def offer(request: web.Request) -> web.Response:
    params = await request.json()
    description = RTCSessionDescription(sdp=params["sdp"], type=params["type"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer_connections.add(pc)

    @pc.on("connectionstatechange")
    async def on_connectionstatechange() -> None:
        if pc.connectionState in ("failed", "closed"):
            await pc.close()
            peer_connections.discard(pc)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            pc.addTrack(VideoTransformTrack(relay.subscribe(track)))

    await pc.setRemoteDescription(description)
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    return web.Response(content_type="application/json", text=json.dumps(answer))


async def on_shutdown(app: web.Application) -> None:
    for pc in list(peer_connections):
        await pc.close()
    peer_connections.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    app = web.Application()
    app.on_shutdown.append(on_shutdown)
    app.router.add_post("/offer", offer)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()

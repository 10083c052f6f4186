"""A GStreamer webrtcbin peer, run by the system python (python3-gi) from test_gstreamer.py:
it publishes a solid colour by WHIP to URL, plays that session back by WHEP and prints the
mean RGB of the frames it got, as JSON. Usage: gstreamer_peer.py URL RRGGBB"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

FRAMES = 5
TIMEOUT_S = 40
VP8 = "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"


def post_sdp(url: str, sdp: str) -> tuple[str, str]:
    request = urllib.request.Request(
        url, data=sdp.encode(), headers={"Content-Type": "application/sdp"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode(), str(response.headers["Location"])


def negotiate(webrtc: Any, url: str, done: Callable[[str], None]) -> None:
    """Offer, wait for every ICE candidate (the server takes no trickle), POST, answer."""

    def offered(promise: Any, _: Any) -> None:
        reply = promise.get_reply()  # kept: its offer lives as long as it does
        offer = reply.get_value("offer") if reply is not None else None
        if offer is not None:  # webrtcbin asks twice; the first reply can be empty
            webrtc.emit("set-local-description", offer, None)

    def gathered(*_: Any) -> None:
        if webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        answer, location = post_sdp(url, webrtc.get_property("local-description").sdp.as_text())
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        kind = GstWebRTC.WebRTCSDPType.ANSWER
        description = GstWebRTC.WebRTCSessionDescription.new(kind, message)
        webrtc.emit("set-remote-description", description, None)
        done(location)

    webrtc.connect("notify::ice-gathering-state", gathered)
    webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(offered, None))


def main(base: str, colour: str) -> None:
    Gst.init(None)
    loop = GLib.MainLoop()
    means: list[list[float]] = []
    pipelines: list[Any] = []

    def got_sample(sink: Any) -> Any:
        buffer = sink.emit("pull-sample").get_buffer()
        data = buffer.extract_dup(0, buffer.get_size())
        means.append([sum(data[channel::3]) / (len(data) // 3) for channel in range(3)])
        if len(means) >= FRAMES:
            GLib.idle_add(loop.quit)
        return Gst.FlowReturn.OK

    def decode(player: Any, pad: Any) -> None:
        tail = Gst.parse_bin_from_description(
            "rtpvp8depay ! vp8dec ! videoconvert ! video/x-raw,format=RGB "
            "! appsink name=sink emit-signals=true",
            True,
        )
        player.add(tail)
        tail.sync_state_with_parent()
        pad.link(tail.get_static_pad("sink"))
        tail.get_by_name("sink").connect("new-sample", got_sample)

    def play(whip_location: str) -> bool:
        player = Gst.Pipeline.new("player")
        webrtc = Gst.ElementFactory.make("webrtcbin", "whep")
        webrtc.set_property("bundle-policy", "max-bundle")
        player.add(webrtc)
        recvonly = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        webrtc.emit("add-transceiver", recvonly, Gst.Caps.from_string(VP8))
        webrtc.connect("pad-added", lambda _, pad: decode(player, pad))
        player.set_state(Gst.State.PLAYING)
        pipelines.append(player)
        session_id = whip_location.rsplit("/", 1)[-1]
        negotiate(webrtc, f"{base}/v1/whep/{session_id}", lambda _: None)
        return False  # once

    publisher = Gst.parse_launch(
        f"videotestsrc pattern=solid-color foreground-color=0xff{colour} is-live=true "
        "! video/x-raw,width=256,height=256,framerate=15/1 ! videoconvert "
        f"! vp8enc deadline=1 ! rtpvp8pay ! {VP8} ! webrtcbin name=whip bundle-policy=max-bundle"
    )
    whip = publisher.get_by_name("whip")
    whip_url = f"{base}/v1/whip?model=invert"
    # Play once the published session has had a moment to produce output.
    started = lambda location: GLib.timeout_add(1000, play, location)  # noqa: E731
    whip.connect("on-negotiation-needed", lambda element: negotiate(element, whip_url, started))
    publisher.set_state(Gst.State.PLAYING)
    GLib.timeout_add_seconds(TIMEOUT_S, loop.quit)
    loop.run()
    for pipeline in (publisher, *pipelines):
        pipeline.set_state(Gst.State.NULL)
    print(json.dumps({"frames": len(means), "mean_rgb": means[-1] if means else None}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

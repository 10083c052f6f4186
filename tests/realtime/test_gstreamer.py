"""A second WebRTC stack: GStreamer's webrtcbin (RSA certificate, libnice) publishes by
WHIP and plays by WHEP; the colour it gets back is the inverse of the one it sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import loopback_only
from support import StartServer

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-gi and GStreamer typelibs
PEER = Path(__file__).with_name("gstreamer_peer.py")
ADDRESS = "10.77.0.1"  # libnice ignores loopback candidates
GST_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
    "from gi.repository import Gst; Gst.init(None);"
    "assert all(Gst.ElementFactory.find(name) for name in"
    " ('webrtcbin', 'nicesrc', 'vp8enc', 'vp8dec', 'videotestsrc', 'appsink'))"
)
COLOUR = (0x30, 0x60, 0xC0)


def why_not_runnable() -> str | None:
    check = subprocess.run([SYSTEM_PYTHON, "-c", GST_CHECK], capture_output=True, check=False)
    if check.returncode != 0:
        return "no GStreamer webrtcbin for the system python3: `make test` installs it as root"
    if not loopback_only():
        return "run pytest through tests/loopback-only, which gives this test its own network"
    return None


@pytest.fixture
def veth_address() -> Iterator[str]:
    """ADDRESS on a veth pair in this throwaway network namespace, removed afterwards (the
    browser tests want a namespace with `lo` only)."""
    reason = why_not_runnable()
    if reason is not None and os.environ.get("CI"):
        pytest.fail(f"CI must run the GStreamer test: {reason}")  # never a silent skip there
    if reason is not None:
        pytest.skip(reason)
    for command in (
        "ip link add rt-gst0 type veth peer name rt-gst1",
        f"ip addr add {ADDRESS}/24 dev rt-gst0",
        "ip link set rt-gst0 up",
        "ip link set rt-gst1 up",
    ):
        subprocess.run(command.split(), check=True)
    try:
        yield ADDRESS
    finally:
        subprocess.run(["ip", "link", "del", "rt-gst0"], check=True)


def test_gstreamer_publishes_by_whip_and_plays_by_whep(
    start_server: StartServer, veth_address: str
) -> None:
    server = start_server("--model", "invert", "--ice-address", veth_address)
    colour = "".join(f"{value:02x}" for value in COLOUR)
    peer = subprocess.run(
        [SYSTEM_PYTHON, str(PEER), server.http_url, colour],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    sys.stderr.write(peer.stderr[-4000:] + "\n".join(server.log[-30:]))
    result = json.loads(peer.stdout.strip().splitlines()[-1])
    assert result["frames"] >= 5, "GStreamer got no video back"
    for got, sent in zip(result["mean_rgb"], COLOUR, strict=True):
        assert abs(got - (255 - sent)) < 8

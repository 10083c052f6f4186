"""The browser harness end to end: headless Chromium's fake webcam through a real
`realtime serve --model invert`, over WebRTC and over the WebSocket."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import numpy as np
import pytest
from browser import screenshot, show_on_origin
from playwright.async_api import Page
from support import StartServer

from realtime.bench.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="session")  # where the browser fixtures live

SIZE = 64  # pictures come back to Python downscaled to SIZE x SIZE
TIMEOUT_MS = 30_000

# Our own page, shown on the server's origin (see browser.show_on_origin):
# http://127.0.0.1 is a secure context, so getUserMedia works, and fetch and
# WebSocket reach the server same-origin.
PAGE = """<!doctype html>
<title>browser smoke test</title>
<style>
  figure { display: inline-block; margin: 4px; font: 12px sans-serif; }
  video, canvas { display: block; width: 240px; height: 240px; border: 1px solid #888; }
</style>
<figure><video id="camera" muted playsinline></video><figcaption>camera</figcaption></figure>
<figure><video id="webrtc" muted playsinline></video><figcaption>WebRTC output</figcaption></figure>
<figure><canvas id="webrtc-camera" width="256" height="256"></canvas>
  <figcaption>WebRTC: camera, centre square</figcaption></figure>
<figure><canvas id="webrtc-output" width="256" height="256"></canvas>
  <figcaption>WebRTC: output, the same moment</figcaption></figure>
<figure><canvas id="sent" width="256" height="256"></canvas>
  <figcaption>WebSocket: sent</figcaption></figure>
<figure><canvas id="received" width="256" height="256"></canvas>
  <figcaption>WebSocket: received</figcaption></figure>
<script>
let SIZE, TIMEOUT_MS;  // set by run()

function timeout(promise, what, ms = TIMEOUT_MS) {
  return Promise.race([promise, new Promise((_, reject) =>
    setTimeout(() => reject(new Error("timed out waiting for " + what)), ms))]);
}

// The centre square of what `source` shows, scaled to `canvas`: like the server's crop.
function drawCentre(source, width, height, canvas) {
  const side = Math.min(width, height);
  canvas.getContext("2d").drawImage(source, (width - side) / 2, (height - side) / 2,
                                    side, side, 0, 0, canvas.width, canvas.height);
}

// A canvas's pixels as a flat [r, g, b, r, g, b, ...] list, scaled to SIZE x SIZE.
function rgb(canvas) {
  const small = document.createElement("canvas");
  small.width = small.height = SIZE;
  const context = small.getContext("2d");
  context.drawImage(canvas, 0, 0, SIZE, SIZE);
  const rgba = context.getImageData(0, 0, SIZE, SIZE).data;
  return Array.from(rgba).filter((_, index) => index % 4 !== 3);
}

async function play(video, stream) {
  video.srcObject = stream;
  await video.play();
  await timeout(new Promise((resolve) => video.requestVideoFrameCallback(resolve)),
                video.id + " video frames");
}

async function viaWebRTC(camera, model) {
  const pc = new RTCPeerConnection();
  const control = pc.createDataChannel("control");
  const ready = new Promise((resolve) => control.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "ready") resolve(message);
  }));
  const remote = new Promise((resolve) => pc.addEventListener("track", (event) =>
    resolve(new MediaStream([event.track]))));
  pc.addTransceiver(camera.getVideoTracks()[0], {direction: "sendrecv"});
  await pc.setLocalDescription(await pc.createOffer());
  await timeout(new Promise((resolve) => {  // no trickle ICE: send every candidate at once
    if (pc.iceGatheringState === "complete") resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  }), "ICE gathering");
  const offer = pc.localDescription.sdp;
  const response = await fetch("/v1/webrtc/offer", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sdp: offer, type: "offer", model}),
  });
  if (!response.ok) throw new Error("offer refused: " + await response.text());
  const answer = await response.json();
  await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
  const readyMessage = await timeout(ready, "the control channel's ready message");

  const cameraVideo = document.getElementById("camera");
  const output = document.getElementById("webrtc");
  await play(output, await timeout(remote, "the remote track"));
  // Let the encoder settle, then take the camera and the output as close together as we can.
  for (let frames = 0; frames < 10; frames++) {
    await timeout(new Promise((resolve) => output.requestVideoFrameCallback(resolve)),
                  "more output frames");
  }
  const cameraNow = document.getElementById("webrtc-camera");
  const outputNow = document.getElementById("webrtc-output");
  drawCentre(cameraVideo, cameraVideo.videoWidth, cameraVideo.videoHeight, cameraNow);
  drawCentre(output, output.videoWidth, output.videoHeight, outputNow);
  const result = {
    ready: readyMessage, sessionId: answer.session_id, offer,
    outputSize: [output.videoWidth, output.videoHeight],
    connection: pc.connectionState, camera: rgb(cameraNow), output: rgb(outputNow),
  };
  pc.close();
  return result;
}

async function viaWebSocket(camera, model) {
  const cameraVideo = document.getElementById("camera");
  const sent = document.getElementById("sent");
  drawCentre(cameraVideo, cameraVideo.videoWidth, cameraVideo.videoHeight, sent);
  const jpeg = await new Promise((resolve) => sent.toBlob(resolve, "image/jpeg", 0.95));

  const socket = new WebSocket(`ws://${location.host}/v1/stream?model=${model}`);
  socket.binaryType = "arraybuffer";
  const messages = [];
  let wake = () => {};
  socket.addEventListener("message", (event) => { messages.push(event.data); wake(); });
  let closed = "";
  socket.addEventListener("close", (event) => {
    closed = ` (close code ${event.code} ${event.reason})`;
    messages.push(null);
    wake();
  });
  async function next(what) {
    while (messages.length === 0) {
      await timeout(new Promise((resolve) => { wake = resolve; }), what);
    }
    const message = messages.shift();
    if (message === null) throw new Error("the WebSocket closed before " + what + closed);
    return message;
  }
  const ready = JSON.parse(await next("the ready message"));
  socket.send(jpeg);
  const frame = JSON.parse(await next("the frame message"));
  const image = await next("the output image");
  const bitmap = await createImageBitmap(new Blob([image]));
  const received = document.getElementById("received");
  received.getContext("2d").drawImage(bitmap, 0, 0, received.width, received.height);
  socket.close();
  return {
    ready, frame, imageBytes: image.byteLength, imageSize: [bitmap.width, bitmap.height],
    sent: rgb(sent), received: rgb(received),
  };
}

async function run({model, size, timeoutMs}) {
  [SIZE, TIMEOUT_MS] = [size, timeoutMs];
  const camera = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  await play(document.getElementById("camera"), camera);
  const webrtc = await viaWebRTC(camera, model);
  const websocket = await viaWebSocket(camera, model);
  return {webrtc, websocket};
}
</script>
"""


def pixels(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int16).reshape(SIZE, SIZE, 3)


def inverse_error(output: np.ndarray, source: np.ndarray) -> float:
    """Mean absolute difference between `output` and `255 - source`, in levels."""
    return float(np.abs(output - (255 - source)).mean())


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return start_server("--model", "invert")


async def test_chromium_streams_its_webcam_through_invert(
    server: ServerProcess, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    await show_on_origin(page, f"{server.http_url}/healthz", PAGE)
    result = await page.evaluate("run", {"model": "invert", "size": SIZE, "timeoutMs": TIMEOUT_MS})
    shot = await screenshot(page, tmp_path / "smoke.png")
    assert shot.read_bytes().startswith(b"\x89PNG")

    webrtc = result["webrtc"]
    assert webrtc["ready"]["model"] == "invert"
    assert webrtc["ready"]["session_id"] == webrtc["sessionId"]
    assert webrtc["outputSize"] == [256, 256]
    assert webrtc["connection"] == "connected"
    candidates = [line for line in webrtc["offer"].splitlines() if line.startswith("a=candidate")]
    # a=candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ ...
    addresses = {ip_address(line.split()[4]) for line in candidates}
    assert addresses and all(address.is_loopback for address in addresses), candidates
    camera, output = pixels(webrtc["camera"]), pixels(webrtc["output"])
    assert camera.std() > 20  # a picture, not a blank frame
    # The output lags the camera by a frame or more, and the fake webcam's pacman
    # turns and its counter ticks every frame: compare where it stays still, the
    # green background below the pacman. Not inverted, it would be ~120 levels off.
    still = np.s_[int(SIZE * 0.8) :, :]
    error = inverse_error(output[still], camera[still])
    assert error < 12, (error, camera[still].mean((0, 1)), output[still].mean((0, 1)))

    websocket = result["websocket"]
    assert websocket["ready"]["type"] == "ready"
    assert websocket["ready"]["model"] == "invert"
    assert websocket["frame"]["type"] == "frame"
    assert websocket["frame"]["source_frame"] == 1
    assert websocket["imageBytes"] > 0
    assert websocket["imageSize"] == [256, 256]
    sent, received = pixels(websocket["sent"]), pixels(websocket["received"])
    assert inverse_error(received, sent) < 6  # the same picture, through JPEG twice

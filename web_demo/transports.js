// The two ways to reach a session, behind one shape:
//   const connection = await connectWebRTC(options) or connectWebSocket(options)
//   connection.sendParams({ prompt: "..." }); connection.framesSent(); connection.close();
// options: { model, params, source, output, handlers, token }
//   token:   a token from POST /v1/tokens, on a server with API keys (the page takes ?token=)
//   source:  { element: the <video> or <canvas> to film, stream: a MediaStream of it }, or
//            null for a model that makes images from params alone
//   output:  { video: <video> (WebRTC), canvas: <canvas> (WebSocket) }
//   handlers.onMessage(message)           every JSON message: ready, params, frame, error
//   handlers.onOutput({ latencyMs })      an output was displayed
//   handlers.onClose(reason)              the connection ended (the caller reconnects)

const MAX_SEND_FPS = 30;
const JPEG_QUALITY = 0.8;
// ICE on a working path connects in well under a second, through a TURN relay in a
// few: after this long (or at ICE's own failure) WebRTC cannot reach the server.
const CONNECT_TIMEOUT_MS = 10_000;

// WebRTC's media path cannot be set up (signalling worked): the page can fall back.
export class WebRTCUnreachable extends Error {}

export async function connectWebSocket({ model, params, source, output, handlers, token }) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // No source: type to image, an image for each params change.
  const query = new URLSearchParams({ model, ...(token ? { token } : {}), ...(source ? {} : { input: "text" }) });
  const socket = new WebSocket(`${scheme}://${location.host}/v1/stream?${query}`);
  socket.binaryType = "blob";
  const sendTimes = new Map();
  let framesSent = 0;
  let ready = null;
  let pendingMeta = null;
  let timer = null;
  const end = ending(() => {
    clearInterval(timer);
    socket.close();
  }, handlers.onClose);

  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error("WebSocket failed to open"));
  });
  socket.onerror = () => end("connection error");
  socket.onclose = (event) => end(event.reason || `closed (${event.code})`);

  socket.onmessage = async (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        ready = message;
        if (Object.keys(params).length) socket.send(JSON.stringify({ type: "params", ...params }));
      }
      if (message.type === "frame") pendingMeta = message;
      handlers.onMessage(message);
      return;
    }
    // The image that belongs to the last `frame` message.
    const meta = pendingMeta;
    pendingMeta = null;
    const bitmap = await createImageBitmap(event.data);
    output.canvas.width = bitmap.width;
    output.canvas.height = bitmap.height;
    output.canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    const sentAt = meta && sendTimes.get(meta.source_frame);
    handlers.onOutput({ latencyMs: sentAt ? performance.now() - sentAt : null });
  };

  // Newest frame wins here too: a frame is captured only when the socket has
  // sent the previous one, so nothing queues in the browser either.
  const frameCanvas = new OffscreenCanvas(1, 1);
  let encoding = false;
  timer = setInterval(async () => {
    if (!source || !ready || encoding) return;
    if (socket.readyState !== WebSocket.OPEN || socket.bufferedAmount > 0) return;
    const element = source.element;
    if (element.videoWidth === 0) return;
    encoding = true;
    try {
      frameCanvas.width = ready.width;
      frameCanvas.height = ready.height;
      drawCover(frameCanvas.getContext("2d"), element, ready.width, ready.height);
      const blob = await frameCanvas.convertToBlob({ type: "image/jpeg", quality: JPEG_QUALITY });
      if (socket.readyState !== WebSocket.OPEN) return;
      framesSent += 1;
      sendTimes.set(framesSent, performance.now());
      sendTimes.delete(framesSent - 300);
      socket.send(blob);
    } finally {
      encoding = false;
    }
  }, 1000 / MAX_SEND_FPS);

  return {
    sendParams: (changes) => socket.send(JSON.stringify({ type: "params", ...changes })),
    framesSent: () => framesSent,
    close: () => end("closed by the page"),
  };
}

export async function connectWebRTC({ model, params, source, output, handlers, token }) {
  const pc = new RTCPeerConnection();
  const control = pc.createDataChannel("control");
  let lastMeta = null;
  let framesSent = 0;
  let latencyMs = null;
  let statsTimer = null;
  const end = ending(() => {
    clearInterval(statsTimer);
    pc.close();
  }, handlers.onClose);

  if (source) {
    for (const track of source.stream.getVideoTracks()) pc.addTransceiver(track, { direction: "sendrecv" });
  } else {
    pc.addTransceiver("video", { direction: "recvonly" }); // txt2img: nothing to send
  }
  pc.ontrack = (event) => {
    output.video.srcObject = new MediaStream([event.track]);
    countFrames(output.video, () => handlers.onOutput({ latencyMs }), end.done);
  };
  control.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "frame") lastMeta = message;
    handlers.onMessage(message);
  };

  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc);
  const response = await fetch("/v1/webrtc/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, model, params, token }),
  });
  const answer = await response.json();
  if (!response.ok) {
    pc.close();
    throw new Error(answer.message || `signalling failed (${response.status})`);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  try {
    await channelOpen(pc, control);
  } catch (error) {
    pc.close();
    throw error;
  }
  control.onclose = () => end("control channel closed");
  pc.onconnectionstatechange = () => {
    if (["failed", "closed", "disconnected"].includes(pc.connectionState)) end(`peer ${pc.connectionState}`);
  };

  // Capture-to-display latency, estimated: the server's own hops for the newest
  // frame, the network round trip, and the time this browser holds frames in its
  // jitter buffer (WebRTC carries no frame numbers to match send and display).
  statsTimer = setInterval(async () => {
    const stats = await pc.getStats();
    let rttMs = 0;
    let jitterMs = 0;
    stats.forEach((report) => {
      if (report.type === "candidate-pair" && report.nominated && report.currentRoundTripTime !== undefined) {
        rttMs = report.currentRoundTripTime * 1000;
      }
      if (report.type === "inbound-rtp" && report.kind === "video" && report.jitterBufferEmittedCount) {
        jitterMs = (report.jitterBufferDelay / report.jitterBufferEmittedCount) * 1000;
      }
      if (report.type === "outbound-rtp" && report.kind === "video") framesSent = report.framesSent ?? framesSent;
    });
    if (lastMeta) {
      const hops = lastMeta.timings_ms;
      latencyMs = hops.decode + hops.queue + hops.model + rttMs + jitterMs;
    }
  }, 500);

  return {
    sendParams: (changes) => {
      if (control.readyState === "open") control.send(JSON.stringify({ type: "params", ...changes }));
    },
    framesSent: () => framesSent,
    close: () => end("closed by the page"),
  };
}

// Draws `element` into a width x height context, centre-cropped like the server's fit.
export function drawCover(context, element, width, height) {
  const sourceWidth = element.videoWidth || element.width;
  const sourceHeight = element.videoHeight || element.height;
  const scale = Math.max(width / sourceWidth, height / sourceHeight);
  const cropWidth = width / scale;
  const cropHeight = height / scale;
  context.drawImage(
    element,
    (sourceWidth - cropWidth) / 2, (sourceHeight - cropHeight) / 2, cropWidth, cropHeight,
    0, 0, width, height,
  );
}

// An idempotent end of a connection: `cleanup` once, then the page hears why.
function ending(cleanup, onClose) {
  let ended = false;
  const end = (reason) => {
    if (ended) return;
    ended = true;
    cleanup();
    onClose(reason);
  };
  end.done = () => ended;
  return end;
}

function countFrames(video, onFrame, stopped) {
  const next = () => {
    if (stopped()) return;
    onFrame();
    video.requestVideoFrameCallback(next);
  };
  video.requestVideoFrameCallback(next);
}

// Resolves once the control channel is open (ICE, DTLS and SCTP all done); rejects with
// WebRTCUnreachable when ICE fails or nothing connects within CONNECT_TIMEOUT_MS.
function channelOpen(pc, control) {
  if (control.readyState === "open") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const fail = () => {
      clearTimeout(timer);
      reject(
        new WebRTCUnreachable(
          "WebRTC could not connect to the server: no network path for the video was found " +
            "between this browser and the server (a firewall, or a server that offers no " +
            "address this browser can reach: see its --ice-address and --ice-server options).",
        ),
      );
    };
    const timer = setTimeout(fail, CONNECT_TIMEOUT_MS);
    control.addEventListener("open", () => {
      clearTimeout(timer);
      resolve();
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState === "failed") fail();
    });
  });
}

function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

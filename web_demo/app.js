// The demo page: a camera (or a sketch pad) streamed to the server, the generated
// stream beside it, live controls for the model's params, and live stats.
import { WebRTCUnreachable, connectWebRTC, connectWebSocket, drawCover } from "./transports.js";

const TRANSPORTS = { webrtc: connectWebRTC, websocket: connectWebSocket };
const HIDDEN_PARAMS = new Set(["output_format", "output_quality"]);
const FIRST_RETRY_MS = 500;
const LAST_RETRY_MS = 8000;
const REFERENCE_QUALITY = 0.9; // JPEG quality of a reference snapped from the camera

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
// On a server with API keys, the page is opened as /?token=... (POST /v1/tokens).
const token = query.get("token") ?? undefined;

const state = {
  transport: TRANSPORTS[query.get("transport")] ? query.get("transport") : "webrtc",
  model: null,
  textOnly: query.get("mode") === "text",
  avatar: query.get("avatar") === "1",
  reference: null, // avatar mode's reference image (a Blob): sent to each new session
  params: {},
  source: null,
  connection: null,
  switching: false,
  outputTimes: [],
  fallbackNote: "", // why the page streams over the WebSocket though WebRTC was asked for
};

// Kept current for people and for automation (the browser tests read it).
const stats = (window.demoStats = {
  transport: state.transport,
  connected: false,
  framesSent: 0,
  framesReceived: 0,
  fps: 0,
  latencyMs: null,
  dropped: 0,
  modelMs: null,
  controlMs: null,
  params: null,
  status: "starting",
  sessionId: null,
});

async function main() {
  const models = await fetchModels();
  const served = models.filter((model) => model.loaded);
  state.model = served.find((model) => model.id === query.get("model")) ?? served[0];
  if (state.avatar && !takesReference(state.model)) state.model = served.find(takesReference) ?? state.model;
  fillModelPicker(models);
  setUpTextOnlyToggle();
  setUpAvatarMode(served);
  for (const radio of document.querySelectorAll("input[name=transport]")) {
    radio.checked = radio.value === state.transport;
    radio.addEventListener("change", () => switchTo({ transport: radio.value }));
  }
  state.source = await openSource();
  buildControls();
  setInterval(refreshOverlay, 250);
  await streamForever();
}

// Connects, and reconnects with backoff whenever the connection ends.
async function streamForever() {
  let retryMs = FIRST_RETRY_MS;
  for (;;) {
    setStatus(`connecting (${state.transport})…`, "");
    const ended = new Promise((resolve) => {
      connect(resolve).catch((error) => resolve(error));
    });
    let reason = await ended;
    state.connection = null;
    stats.connected = false;
    if (state.switching) {
      state.switching = false;
      retryMs = FIRST_RETRY_MS;
      continue;
    }
    if (reason instanceof WebRTCUnreachable) {
      fallBackToWebSocket(reason.message);
      continue;
    }
    if (reason instanceof Error) reason = reason.message;
    if (stats.framesReceived > 0) retryMs = FIRST_RETRY_MS;
    for (let left = retryMs; left > 0; left -= 250) {
      setStatus(`${reason}: reconnecting in ${Math.ceil(left / 1000)} s`, "down");
      await sleep(250);
      if (state.switching) break;
    }
    retryMs = Math.min(retryMs * 2, LAST_RETRY_MS);
  }
}

async function connect(onClose) {
  const connectTo = TRANSPORTS[state.transport];
  const wantsCamera = state.model.kind !== "txt2img" && !textOnly();
  showOutput(state.transport);
  state.connection = await connectTo({
    model: state.model.id,
    params: state.params,
    source: wantsCamera ? state.source : null,
    output: { video: $("output-video"), canvas: $("output-canvas") },
    handlers: { onMessage, onOutput, onClose },
    token,
  });
}

function onMessage(message) {
  switch (message.type) {
    case "ready":
      stats.connected = true;
      stats.params = message.params;
      stats.sessionId = message.session_id;
      setStatus(`live · ${message.model} · ${state.transport}`, "live");
      setNote(textOnly() ? "Type a prompt: each change makes a new image." : "");
      if (message.random_weights) setNote("Random weights: outputs are noise (for speed measurements).");
      if (state.avatar && state.reference) sendReference(state.reference); // a new session has none
      break;
    case "params":
      stats.params = message.params;
      break;
    case "frame":
      stats.dropped = message.dropped_frames;
      stats.modelMs = message.timings_ms.model;
      stats.controlMs = message.timings_ms.control ?? null;
      break;
    case "error":
      setNote(`${message.code}: ${message.message}`);
      break;
  }
}

function onOutput({ latencyMs }) {
  stats.framesReceived += 1;
  if (latencyMs !== null) stats.latencyMs = latencyMs;
  const now = performance.now();
  state.outputTimes.push(now);
  while (state.outputTimes[0] < now - 1000) state.outputTimes.shift();
}

function refreshOverlay() {
  const now = performance.now();
  state.outputTimes = state.outputTimes.filter((time) => time >= now - 1000);
  stats.fps = state.outputTimes.length;
  stats.framesSent = state.connection ? state.connection.framesSent() : stats.framesSent;
  $("stat-fps").textContent = stats.connected ? String(stats.fps) : "–";
  $("stat-latency").textContent = stats.latencyMs === null ? "–" : `${Math.round(stats.latencyMs)} ms`;
  $("stat-model").textContent = stats.modelMs === null ? "–" : `${stats.modelMs.toFixed(1)} ms`;
  $("stat-control").textContent = stats.controlMs ? `${stats.controlMs.toFixed(1)} ms` : "–";
  $("stat-dropped").textContent = String(stats.dropped);
}

// Sources: the camera, or a sketch pad to draw on when there is none.

async function openSource() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    const video = $("camera");
    video.srcObject = stream;
    await video.play();
    return { element: video, stream };
  } catch (error) {
    setNote(`No camera (${error.name}): draw on the sketch pad instead.`);
    return openSketchPad();
  }
}

function openSketchPad() {
  const canvas = $("sketch");
  $("camera").hidden = true;
  canvas.hidden = false;
  $("source-title").textContent = "Sketch pad";
  canvas.width = canvas.height = 512;
  const context = canvas.getContext("2d");
  const gradient = context.createLinearGradient(0, 0, 512, 512);
  gradient.addColorStop(0, "#3a6ea5");
  gradient.addColorStop(1, "#f2c14e");
  context.fillStyle = gradient;
  context.fillRect(0, 0, 512, 512);
  context.lineWidth = 14;
  context.lineCap = "round";
  context.strokeStyle = "#1b1b1b";
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * 512, ((event.clientY - box.top) / box.height) * 512];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    context.beginPath();
    context.moveTo(...point(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
  });
  canvas.addEventListener("pointerup", () => (drawing = false));
  // captureStream emits a frame only when the canvas is painted: repaint one pixel
  // as it is, so a still sketch keeps streaming and a new prompt shows at once.
  setInterval(() => context.putImageData(context.getImageData(0, 0, 1, 1), 0, 0), 1000 / 15);
  return { element: canvas, stream: canvas.captureStream(30) };
}

// Controls, built from the model's own parameter descriptions.

function fillModelPicker(models) {
  const picker = $("model");
  picker.replaceChildren(
    ...models.map((model) => {
      const option = new Option(`${model.id} (${model.kind})`, model.id, false, model.id === state.model.id);
      option.disabled = !model.loaded;
      option.title = model.loaded ? model.description : "not loaded on this server";
      return option;
    }),
  );
  picker.addEventListener("change", () => useModel(models.find((model) => model.id === picker.value)));
}

function useModel(model) {
  state.model = model;
  state.params = {};
  state.avatar &&= takesReference(model);
  $("model").value = model.id;
  buildControls();
  setUpTextOnlyToggle();
  showAvatarMode();
  switchTo({ model: model.id });
}

function buildControls() {
  const form = $("controls");
  form.replaceChildren();
  for (const [name, spec] of Object.entries(state.model.params)) {
    if (!HIDDEN_PARAMS.has(name)) form.append(control(name, spec));
  }
}

function control(name, spec) {
  const label = document.createElement("label");
  label.title = spec.description;
  const value = state.params[name] ?? spec.default;
  let input;
  if (spec.choices) {
    input = document.createElement("select");
    input.append(...spec.choices.map((choice) => new Option(choice, choice, false, choice === value)));
  } else if (spec.type === "string") {
    input = document.createElement("input");
    input.type = "text";
    label.classList.add("wide");
  } else {
    input = document.createElement("input");
    const bounded = spec.minimum !== undefined && spec.maximum !== undefined;
    input.type = bounded && spec.maximum - spec.minimum <= 10_000 ? "range" : "number";
    if (spec.minimum !== undefined) input.min = spec.minimum;
    if (spec.maximum !== undefined) input.max = spec.maximum;
    input.step = spec.type === "integer" ? 1 : bounded ? (spec.maximum - spec.minimum) / 100 : "any";
  }
  input.name = name;
  input.value = value;
  const shown = document.createElement("output");
  shown.value = value;
  const title = document.createElement("span");
  title.textContent = name.replaceAll("_", " ");
  // A text field shows its own value; sliders and pickers show theirs beside the name.
  label.append(title, spec.type === "string" ? "" : shown, input);
  let pending = null;
  input.addEventListener("input", () => {
    const parsed = spec.type === "string" ? input.value : Number(input.value);
    shown.value = parsed;
    state.params[name] = parsed;
    clearTimeout(pending);
    // A short pause while typing or dragging: the server only needs the latest value.
    pending = setTimeout(() => state.connection?.sendParams({ [name]: parsed }), 120);
  });
  return label;
}

// Type to image: a model that makes images from text alone can run without the camera.

function textOnly() {
  return state.textOnly && state.model.text_to_image;
}

function setUpTextOnlyToggle() {
  const checkbox = $("text-only");
  $("text-only-toggle").hidden = !state.model.text_to_image;
  checkbox.checked = state.textOnly;
  checkbox.onchange = () => {
    state.textOnly = checkbox.checked;
    switchTo({});
  };
}

// Avatar mode: each output keeps the identity of a reference image, snapped from the
// camera or uploaded, on a model with an IP-Adapter. The image goes over HTTP
// (PUT /v1/sessions/{id}/reference), alike for both transports.

// A model with an IP-Adapter: /v1/models says `takes_reference`.
const takesReference = (model) => model.takes_reference;

function setUpAvatarMode(served) {
  $("mode").hidden = !served.some(takesReference);
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      state.avatar = radio.value === "avatar";
      if (state.avatar && !takesReference(state.model)) return useModel(served.find(takesReference));
      showAvatarMode();
      rememberInUrl();
      if (stats.connected && state.reference) sendReference(state.avatar ? state.reference : null);
    });
  }
  $("snap").addEventListener("click", snapReference);
  const upload = $("upload");
  upload.addEventListener("change", () => {
    if (upload.files.length) setReference(upload.files[0]);
    upload.value = ""; // the same file again is a change too
  });
  showAvatarMode();
}

function showAvatarMode() {
  $("avatar").hidden = !state.avatar;
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.checked = radio.value === (state.avatar ? "avatar" : "plain");
  }
}

// The source's current frame at the model's size, as a JPEG.
async function snapReference() {
  const { width, height } = state.model;
  const canvas = new OffscreenCanvas(width, height);
  drawCover(canvas.getContext("2d"), state.source.element, width, height);
  await setReference(await canvas.convertToBlob({ type: "image/jpeg", quality: REFERENCE_QUALITY }));
}

// A new reference: kept and shown once the session took it (or, between sessions, at
// once: the next session gets it). Refused, the page says why and keeps the last one.
async function setReference(image) {
  if (stats.connected && !(await sendReference(image))) return;
  state.reference = image;
  const thumbnail = $("reference");
  URL.revokeObjectURL(thumbnail.src);
  thumbnail.src = URL.createObjectURL(image);
  thumbnail.hidden = false;
}

// PUTs `image` as the session's reference (null: DELETEs it); false, said on the page, if refused.
async function sendReference(image) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const response = await fetch(`/v1/sessions/${stats.sessionId}/reference`, {
      method: image ? "PUT" : "DELETE",
      headers,
      body: image,
    });
    if (response.ok) return true;
    const error = await response.json().catch(() => ({ code: `http_${response.status}`, message: "" }));
    setNote(`${error.code}: ${error.message}`);
  } catch (error) {
    setNote(`the reference was not sent: ${error.message}`);
  }
  return false;
}

// Switching transport, model or mode: close, and the loop reconnects at once.

function switchTo(changes) {
  if (changes.transport) {
    state.transport = stats.transport = changes.transport;
    state.fallbackNote = "";
  }
  rememberInUrl();
  state.switching = true;
  state.connection?.close();
}

// The page's choices in its address, so that a reload keeps them.
function rememberInUrl() {
  const url = new URL(location.href);
  url.searchParams.set("transport", state.transport);
  url.searchParams.set("model", state.model.id);
  if (textOnly()) url.searchParams.set("mode", "text");
  else url.searchParams.delete("mode");
  if (state.avatar) url.searchParams.set("avatar", "1");
  else url.searchParams.delete("avatar");
  history.replaceState(null, "", url);
}

// WebRTC cannot reach the server: say why, and stream over the WebSocket instead.
function fallBackToWebSocket(why) {
  state.transport = stats.transport = "websocket";
  for (const radio of document.querySelectorAll("input[name=transport]")) radio.checked = radio.value === "websocket";
  state.fallbackNote = `${why} Streaming over the WebSocket instead.`;
  setNote("");
}

function showOutput(transport) {
  $("output-video").hidden = transport !== "webrtc";
  $("output-canvas").hidden = transport !== "websocket";
}

function setStatus(text, kind) {
  stats.status = text;
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

function setNote(text) {
  $("note").textContent = [state.fallbackNote, text].filter(Boolean).join(" ");
}

async function fetchModels() {
  for (let retryMs = FIRST_RETRY_MS; ; retryMs = Math.min(retryMs * 2, LAST_RETRY_MS)) {
    try {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      const response = await fetch("/v1/models", { headers });
      if (response.ok) return await response.json();
    } catch {
      // The server is not up yet: try again.
    }
    setStatus("waiting for the server…", "down");
    await sleep(retryMs);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// For tests and curious people: the RGB at (x, y), in fractions of the model's
// frame, of the camera (as the server sees it) and of the displayed output.
window.demoSample = (x, y) => {
  const size = 256;
  const canvas = new OffscreenCanvas(size, size);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const pixel = (element) => {
    drawCover(context, element, size, size);
    return Array.from(context.getImageData(Math.round(x * (size - 1)), Math.round(y * (size - 1)), 1, 1).data.slice(0, 3));
  };
  const output = state.transport === "webrtc" ? $("output-video") : $("output-canvas");
  return { camera: pixel(state.source.element), output: pixel(output) };
};

main();

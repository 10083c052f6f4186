// fal's npm client (@fal-ai/client) against this server, driven by
// tests/fal/test_js_client.py: `node camera.mjs PLAN.json`. It prints one JSON line
// per event (token, open, sent, result, error, close, summary) for the test to read.
//
// The plan: {"server": "http://127.0.0.1:PORT", "key": KEY, "app": APP,
//   "token_apps": [alias], "token_expiration": s (asked of the server, and when the
//   client refreshes: at 90% of it), "token_delay_ms": ms (a token handed over late),
//   "out": DIR (each result's image is written there as REQUEST_ID.jpg, or resultN.jpg),
//   "camera": {"frames": [JPEG files], "inputs": {...}, "interval_ms": 16, "duration_ms": 3000},
//   "steps": [{"send": {...inputs, "image_file": F, "image_text": T}, "await": true,
//              "sleep_ms": ms, "close": true}, ...],
//   "settle_ms": how long to wait for the last results}

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [major] = process.versions.node.split(".").map(Number);
if (major < 18) {
  console.error(`node ${process.versions.node} is too old: @fal-ai/client needs node >= 18`);
  process.exit(2);
}

const { fal } = await import("@fal-ai/client");
const { WebSocket: WsWebSocket } = await import("ws");

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const server = new URL(plan.server);
const started = performance.now();
const now = () => Math.round((performance.now() - started) * 10) / 10;
const emit = (event) => console.log(JSON.stringify({ t: now(), ...event }));

// The JS client always connects to wss://fal.run with the global WebSocket: redirecting
// that constructor is the only way to point it elsewhere (docs/fal.md). `ws` stands in
// for the browser's (Node < 22 has none), receiving binary frames as a browser does.
// The subclass also counts what reaches the socket: the client keeps only the newest
// request until the socket opens.
const socketSends = { binary: 0, text: 0 };
globalThis.WebSocket = class RedirectedWebSocket extends WsWebSocket {
  constructor(url, protocols) {
    const target = new URL(url);
    target.protocol = server.protocol === "https:" ? "wss:" : "ws:";
    target.host = server.host;
    super(target.toString(), protocols);
    this.binaryType = "arraybuffer";
    const path = target.pathname;
    this.addEventListener("open", () => emit({ event: "open", url: path }));
    this.addEventListener("close", ({ code, reason }) => emit({ event: "close", code, reason }));
  }

  send(data, ...rest) {
    socketSends[typeof data === "string" ? "text" : "binary"] += 1;
    super.send(data, ...rest);
  }
};

// A token provider backed by "the app's server": the key never reaches the client.
async function tokenProvider(app) {
  const answer = await fetch(new URL("/tokens/", server), {
    method: "POST",
    headers: { Authorization: `Key ${plan.key}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      allowed_apps: plan.token_apps,
      token_expiration: plan.token_expiration ?? 120,
    }),
  });
  const token = await answer.json();
  emit({ event: "token", app, status: answer.status });
  if (!answer.ok) throw new Error(`POST /tokens/: ${answer.status} ${JSON.stringify(token)}`);
  if (plan.token_delay_ms) await sleep(plan.token_delay_ms); // to hand over an expired token
  return token;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const sentAt = new Map();
let waiter = null; // the step waiting for the next result or error
let results = 0;
let errors = 0;

function settle(event) {
  if (waiter) {
    const resolve = waiter;
    waiter = null;
    resolve(event);
  }
}

const connection = fal.realtime.connect(plan.app, {
  connectionKey: `test-${process.pid}`, // the default asks crypto.randomUUID (no global crypto on Node 18)
  tokenProvider,
  tokenExpirationSeconds: plan.token_expiration ?? 120,
  throttleInterval: 0, // fal's camera demo: every frame goes out
  onResult(result) {
    results += 1;
    const [image] = result.images ?? [];
    const id = result.request_id;
    const file = image && plan.out ? join(plan.out, `${id ?? `result${results}`}.jpg`) : null;
    if (file) writeFileSync(file, image.content);
    const latency = sentAt.has(id) ? Math.round((performance.now() - sentAt.get(id)) * 10) / 10 : null;
    emit({
      event: "result",
      request_id: id ?? null,
      frame: result.frame,
      dropped_frames: result.dropped_frames,
      content_class: image?.content?.constructor?.name,
      content_type: image?.content_type,
      width: image?.width,
      height: image?.height,
      seed: result.seed,
      timings: result.timings,
      latency_ms: latency,
      file,
    });
    settle("result");
  },
  onError(error) {
    errors += 1;
    emit({ event: "error", message: error.message, status: error.status, body: error.body ?? null });
    settle("error");
  },
});

function send(inputs, requestId) {
  if (requestId != null) sentAt.set(requestId, performance.now());
  connection.send(inputs);
}

function materialise({ image_file, image_text, ...inputs }) {
  if (image_file) inputs.image_bytes = new Uint8Array(readFileSync(image_file));
  if (image_text) inputs.image_bytes = new TextEncoder().encode(image_text); // not an image
  return inputs;
}

function nextEvent(timeoutMs) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => settle("none"), timeoutMs);
    waiter = (event) => {
      clearTimeout(timer);
      resolve(event);
    };
  });
}

let sent = 0;
if (plan.camera) {
  // fal's camera demo: a 512x512 JPEG (quality 0.7) every 16 ms, newest wins.
  const { frames, inputs, interval_ms: interval, duration_ms: duration } = plan.camera;
  const jpegs = frames.map((file) => new Uint8Array(readFileSync(file)));
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const requestId = `c${sent}`;
      send({ ...inputs, image_bytes: jpegs[sent % jpegs.length], request_id: requestId }, requestId);
      sent += 1;
      if (performance.now() - started >= duration) {
        clearInterval(timer);
        resolve();
      }
    }, interval);
  });
}
for (const step of plan.steps ?? []) {
  const waiting = step.await ? nextEvent(step.timeout_ms ?? 30000) : null;
  if (step.send) {
    send(materialise(step.send), step.send.request_id);
    sent += 1;
  }
  if (waiting) emit({ event: "awaited", got: await waiting });
  if (step.sleep_ms) await sleep(step.sleep_ms);
  if (step.close) connection.close();
}
// The last results (and, if the server closes, its close) come in meanwhile.
await sleep(plan.settle_ms ?? 1000);
emit({ event: "summary", sent, socket_sends: socketSends, results, errors });
connection.close();
await sleep(100);
process.exit(0);

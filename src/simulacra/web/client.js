// simulacra browser client: connect, reconstruct frames, send input.
//
//   WS /signal?token=T&transport=webrtc ── offer (all candidates) ──► server
//        ◄── answer ── data channel "sim" opens ──► Hello ... (protocol.js)
//   not open within 4 s (or ?transport=ws):
//   WS /signal?token=T&transport=ws ── the same protocol on binary frames
//
//   Frame ─► FrameDecoder.apply ─► crc32 == checksum ? Ack(seq) : Resync
//                 └─► canvas (ImageData, dirty tiles)
//   keys / swipes / pointer ─► Input(seq) ··· Frame.inputSeq >= seq ─► latency sample
//
// `window.simulacra` is a live view of the connection for people and tests;
// its `state` goes connecting -> hello -> streaming -> closed (see closeReason).

import { ClientConnection, ErrorCode, MessageType, ProtocolError, State } from "./protocol.js";
import { CodecError, FrameDecoder } from "./tiles.js";

const CLIENT_AGENT = "simulacra-web/0.1";
const WEBRTC_TIMEOUT_MS = 4000;
const RESYNC_RETRY_MS = 2000;
const LATENCY_WINDOW = 50;
const MAX_PENDING_INPUTS = 1024;
const SWIPE_MIN_PX = 30;
const MAX_REASON_CHARS = 200; // the server caps free text at 1024 characters

const params = new URLSearchParams(location.search);
const token = params.get("token") ?? "";
const requestedTransport = params.get("transport");

const KEYS = {
  ArrowLeft: "ArrowLeft",
  ArrowRight: "ArrowRight",
  ArrowUp: "ArrowUp",
  ArrowDown: "ArrowDown",
  a: "ArrowLeft",
  d: "ArrowRight",
  w: "ArrowUp",
  s: "ArrowDown",
};

const $ = (id) => document.getElementById(id);
const canvas = $("screen");
const ctx = canvas.getContext("2d", { alpha: false });

const stats = {
  fps: 0,
  latencyP50Ms: null,
  kBps: 0,
  bytesReceived: 0,
  resyncs: 0,
  skippedFrames: 0,
};

const view = {
  state: "connecting",
  transport: null,
  closeReason: "",
  fallbackReason: "",
  frames: 0,
  mismatches: 0,
  checksumOk: null,
  lastChecksum: null,
  role: "",
  app: "",
  session: "",
  width: 0,
  height: 0,
  stats,
};
window.simulacra = view;

let carrier = null;
let conn = null;
let decoder = null;
let imageData = null;
let inputSeq = 0;
let awaitingKeyframe = false;
let lastResyncAt = 0;
const pendingInputs = new Map();
const latencies = [];
const frameTimes = [];
const byteLog = [];

// ---------------------------------------------------------------- status UI

function showStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${cls}`;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function refreshStats() {
  const now = performance.now();
  while (frameTimes.length && frameTimes[0] < now - 1000) frameTimes.shift();
  while (byteLog.length && byteLog[0][0] < now - 1000) byteLog.shift();
  stats.fps = frameTimes.length;
  stats.kBps = byteLog.reduce((sum, [, n]) => sum + n, 0) / 1000;
  stats.latencyP50Ms = latencies.length ? median(latencies) : null;
  $("stat-transport").textContent = view.transport ?? "-";
  $("stat-fps").textContent = String(stats.fps);
  $("stat-latency").textContent =
    stats.latencyP50Ms === null ? "-" : `${stats.latencyP50Ms.toFixed(1)} ms`;
  $("stat-kbps").textContent = stats.kBps.toFixed(1);
  $("stat-frames").textContent = String(view.frames);
  $("stat-mismatches").textContent = String(view.mismatches);
}
setInterval(refreshStats, 500);

// Integer scale when the window allows it, so pixels stay square and crisp.
function fitCanvas() {
  if (!view.width) return;
  const stage = $("stage").getBoundingClientRect();
  let scale = Math.min((stage.width - 16) / view.width, (stage.height - 16) / view.height);
  if (scale >= 1) scale = Math.floor(scale);
  scale = Math.max(scale, 0.1);
  canvas.style.width = `${Math.round(view.width * scale)}px`;
  canvas.style.height = `${Math.round(view.height * scale)}px`;
}
window.addEventListener("resize", fitCanvas);

// ---------------------------------------------------------------- carriers

function signalUrl(transport) {
  const url = new URL("/signal", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ token, transport }).toString();
  return url.href;
}

function closeText(ev) {
  if (ev.reason) return `${ev.code} ${ev.reason}`;
  if (ev.code === 1006) return "signaling refused or lost (check the token)";
  return `closed (${ev.code})`;
}

function waitIceComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// A carrier is {kind, send(bytes), close(), onmessage(bytes), onclose(reason)}.
// The server answering with an explicit refusal (error message, 44xx close)
// is final: falling back to ws would only be refused again.
function connectWebRTC() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalUrl("webrtc"));
    const pc = new RTCPeerConnection({ iceServers: [] });
    const channel = pc.createDataChannel("sim");
    channel.binaryType = "arraybuffer";
    let open = false;
    let closed = false;
    const c = {
      kind: "webrtc",
      onmessage: () => {},
      onclose: () => {},
      send: (bytes) => channel.send(bytes),
      close: () => {
        closed = true;
        channel.close();
        pc.close();
        ws.close(1000, "bye");
      },
    };
    const fail = (reason, final = false) => {
      if (open) {
        if (!closed) {
          closed = true;
          c.close();
          c.onclose(reason);
        }
        return;
      }
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      c.close();
      const err = new Error(reason);
      err.final = final;
      reject(err);
    };
    const timer = setTimeout(
      () => fail(`data channel not open within ${WEBRTC_TIMEOUT_MS / 1000} s`),
      WEBRTC_TIMEOUT_MS,
    );
    ws.onopen = async () => {
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await waitIceComplete(pc);
        ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
      } catch (err) {
        fail(`offer failed: ${err.message}`);
      }
    };
    ws.onmessage = async (ev) => {
      if (typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        fail("signaling sent bad JSON", true);
        return;
      }
      if (msg.type === "answer") {
        try {
          await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        } catch (err) {
          fail(`bad answer: ${err.message}`);
        }
      } else if (msg.type === "error") {
        fail(`${msg.code} ${msg.message}`, true);
      }
    };
    // Once the channel is up the signaling socket has done its job: the
    // session lives and dies with the data channel.
    ws.onclose = (ev) => {
      if (!open) fail(closeText(ev), ev.code >= 4000);
    };
    channel.onopen = () => {
      if (closed) return;
      open = true;
      clearTimeout(timer);
      resolve(c);
    };
    channel.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) c.onmessage(new Uint8Array(ev.data));
    };
    channel.onclose = () => fail("data channel closed");
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") fail("WebRTC connection failed");
    };
  });
}

function connectWS() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalUrl("ws"));
    ws.binaryType = "arraybuffer";
    let open = false;
    const c = {
      kind: "ws",
      onmessage: () => {},
      onclose: () => {},
      send: (bytes) => ws.send(bytes),
      close: () => ws.close(1000, "bye"),
    };
    ws.onopen = () => {
      open = true;
      resolve(c);
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) {
        c.onmessage(new Uint8Array(ev.data));
        return;
      }
      try {
        const msg = JSON.parse(ev.data);
        if (msg.type === "error") view.closeReason = `${msg.code} ${msg.message}`;
      } catch {
        // A text frame that is not JSON carries nothing we can act on.
      }
    };
    ws.onclose = (ev) => {
      const reason = view.closeReason || closeText(ev);
      if (open) c.onclose(reason);
      else reject(new Error(reason));
    };
  });
}

// ---------------------------------------------------------------- session

function send(msg) {
  if (!carrier || !conn) return;
  carrier.send(conn.send(msg));
}

function close(reason) {
  if (view.state === "closed") return;
  view.state = "closed";
  view.closeReason = reason;
  showStatus(`closed: ${reason}`, "closed");
  if (carrier) {
    const c = carrier;
    carrier = null;
    c.close();
  }
  refreshStats();
}

function fail(err) {
  if (conn && carrier) {
    try {
      const code = err instanceof ProtocolError ? err.code : ErrorCode.SERVER_ERROR;
      const bytes = conn.fail(new ProtocolError(err.message.slice(0, MAX_REASON_CHARS), code));
      if (bytes) carrier.send(bytes);
    } catch {
      // The carrier may already be gone; closing below is all that is left.
    }
  }
  close(err.message);
}

function setupFramebuffer(width, height, dictionarySlots) {
  decoder = new FrameDecoder(width, height, { dictionarySlots });
  view.width = width;
  view.height = height;
  canvas.width = width;
  canvas.height = height;
  imageData = ctx.createImageData(width, height);
  fitCanvas();
}

function requestResync(reason) {
  const now = performance.now();
  if (awaitingKeyframe && now - lastResyncAt < RESYNC_RETRY_MS) return;
  awaitingKeyframe = true;
  lastResyncAt = now;
  stats.resyncs += 1;
  send({ type: MessageType.Resync, reason: reason.slice(0, MAX_REASON_CHARS) });
}

async function onFrame(msg) {
  const now = performance.now();
  if (msg.keyframe && (msg.width !== decoder.width || msg.height !== decoder.height)) {
    setupFramebuffer(msg.width, msg.height, decoder.dictionary.slots);
  }
  // Deltas against a picture we know is wrong cannot be verified; wait for the keyframe.
  if (awaitingKeyframe && !msg.keyframe) {
    stats.skippedFrames += 1;
    requestResync("waiting for keyframe");
    return;
  }
  if (msg.width !== decoder.width || msg.height !== decoder.height) {
    requestResync("frame size changed without a keyframe");
    return;
  }
  let written;
  try {
    written = await decoder.apply(msg.tiles, { keyframe: msg.keyframe });
  } catch (err) {
    if (!(err instanceof CodecError)) throw err;
    view.mismatches += 1;
    view.checksumOk = false;
    requestResync(`bad tile: ${err.message}`);
    return;
  }
  if (written.length) {
    decoder.paint(imageData, written);
    ctx.putImageData(imageData, 0, 0);
  }
  view.frames += 1;
  frameTimes.push(now);
  const crc = decoder.checksum();
  view.lastChecksum = crc;
  if (crc !== msg.checksum) {
    view.mismatches += 1;
    view.checksumOk = false;
    requestResync("checksum mismatch");
    return;
  }
  view.checksumOk = true;
  awaitingKeyframe = false;
  send({ type: MessageType.Ack, seq: msg.seq });
  for (const [seq, sentAt] of pendingInputs) {
    if (seq > msg.inputSeq) break;
    latencies.push(now - sentAt);
    if (latencies.length > LATENCY_WINDOW) latencies.shift();
    pendingInputs.delete(seq);
  }
}

function onWelcome(msg) {
  if (msg.tileSize !== 16) throw new ProtocolError(`tile_size ${msg.tileSize} is not 16`);
  view.state = "streaming";
  view.role = msg.role;
  view.app = msg.app;
  view.session = msg.session;
  $("app-name").textContent = `${msg.app} · ${msg.session} · ${msg.role}`;
  setupFramebuffer(msg.width, msg.height, msg.dictionarySlots);
}

async function onBytes(bytes) {
  if (view.state === "closed") return;
  stats.bytesReceived += bytes.length;
  byteLog.push([performance.now(), bytes.length]);
  const msg = conn.receiveData(bytes);
  switch (msg.type) {
    case MessageType.Welcome:
      onWelcome(msg);
      break;
    case MessageType.Frame:
      await onFrame(msg);
      break;
    case MessageType.Bye:
      close(msg.reason || "server said bye");
      break;
    case MessageType.Error:
      close(`error ${msg.code}: ${msg.message}`);
      break;
    default:
      break;
  }
}

function startSession(c) {
  carrier = c;
  conn = new ClientConnection();
  view.transport = c.kind;
  view.state = "hello";
  showStatus(c.kind === "webrtc" || requestedTransport === "ws" ? c.kind : "ws fallback", c.kind);
  // Frames decode asynchronously (ZLIB tiles); a promise chain keeps them in order.
  let chain = Promise.resolve();
  c.onmessage = (bytes) => {
    chain = chain.then(() => onBytes(bytes)).catch(fail);
  };
  c.onclose = (reason) => {
    chain = chain.then(() => close(reason));
  };
  send({
    type: MessageType.Hello,
    client: CLIENT_AGENT,
    app: params.get("app") ?? "",
    session: params.get("session") ?? "",
    mode: "tiles",
  });
  refreshStats();
}

async function connect() {
  if (!token) {
    close("no token in the URL (add ?token=...)");
    return;
  }
  showStatus("connecting", "connecting");
  if (requestedTransport !== "ws" && typeof RTCPeerConnection === "function") {
    try {
      startSession(await connectWebRTC());
      return;
    } catch (err) {
      if (err.final || requestedTransport === "webrtc") {
        close(err.message);
        return;
      }
      view.fallbackReason = err.message;
      showStatus("connecting (ws fallback)", "connecting");
    }
  }
  try {
    startSession(await connectWS());
  } catch (err) {
    close(err.message);
  }
}

// ---------------------------------------------------------------- input

function sendInput(kind, key, x, y, buttons) {
  if (!conn || conn.state !== State.STREAMING || view.role === "view") return;
  inputSeq += 1;
  pendingInputs.set(inputSeq, performance.now());
  if (pendingInputs.size > MAX_PENDING_INPUTS) {
    pendingInputs.delete(pendingInputs.keys().next().value);
  }
  send({ type: MessageType.Input, seq: inputSeq, kind, key, x, y, buttons });
}

window.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  const key = KEYS[ev.key.length === 1 ? ev.key.toLowerCase() : ev.key];
  if (!key) return;
  ev.preventDefault();
  sendInput("key", key, 0, 0, 0);
});

function framebufferPoint(ev) {
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) * view.width) / rect.width);
  const y = Math.floor(((ev.clientY - rect.top) * view.height) / rect.height);
  return [Math.min(Math.max(x, 0), view.width - 1), Math.min(Math.max(y, 0), view.height - 1)];
}

// Moves are coalesced to one Input per animation frame; presses and releases go at once.
let pendingMove = null;
let swipeStart = null;

function sendPointer(ev) {
  if (!view.width) return;
  const [x, y] = framebufferPoint(ev);
  sendInput("pointer", "", x, y, ev.buttons);
}

canvas.addEventListener("pointerdown", (ev) => {
  canvas.focus();
  canvas.setPointerCapture(ev.pointerId);
  if (ev.pointerType === "touch") swipeStart = [ev.clientX, ev.clientY];
  sendPointer(ev);
});

canvas.addEventListener("pointermove", (ev) => {
  if (ev.buttons === 0) return;
  if (pendingMove === null) {
    requestAnimationFrame(() => {
      const last = pendingMove;
      pendingMove = null;
      if (last) sendPointer(last);
    });
  }
  pendingMove = ev;
});

canvas.addEventListener("pointerup", (ev) => {
  pendingMove = null;
  sendPointer(ev);
  if (ev.pointerType !== "touch" || !swipeStart) return;
  const dx = ev.clientX - swipeStart[0];
  const dy = ev.clientY - swipeStart[1];
  swipeStart = null;
  if (Math.max(Math.abs(dx), Math.abs(dy)) < SWIPE_MIN_PX) return;
  const key =
    Math.abs(dx) > Math.abs(dy) ? (dx > 0 ? "ArrowRight" : "ArrowLeft") : dy > 0 ? "ArrowDown" : "ArrowUp";
  sendInput("key", key, 0, 0, 0);
});

canvas.addEventListener("pointercancel", () => {
  pendingMove = null;
  swipeStart = null;
});

window.addEventListener("pagehide", () => {
  if (conn && conn.state === State.STREAMING) send({ type: MessageType.Bye, reason: "page closed" });
});

connect();

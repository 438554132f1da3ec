// simulacra browser client: connect, reconstruct frames, send input, reconnect.
//
//   token (?token=, this tab, or remembered) ─► GET /api/status (Bearer): 401 ─► connect form
//        │ answered                                             unreachable ─► backoff
//        ▼
//   carriers.js: WebRTC data channel "sim" (or the WebSocket) ─► Hello(app, session) ... Welcome
//   Frame | PackedFrame (inflate, unpack) ─► FrameDecoder.apply ─► checksum ok ? Ack : Resync
//     (Acks cumulative: every other frame, keyframes at once, none later than 50 ms)
//     (Frame: CRC-32 of the picture; PackedFrame: the tile table, see tiles.js)
//                 └─► canvas (ImageData, dirty tiles; CSS-scaled, crisp)
//   keys / swipes / pointer (≤ 60/s) / material picker ─► Input(seq)
//   lost ─► "reconnecting in 1 s…" ─► 2 s ─► 4 s ... 15 s (backoff.js); refused ─► closed
//
// `window.simulacra` is a live view of the connection for people and tests;
// its `state` goes connecting -> hello -> streaming -> reconnecting | closed.

import { reconnectDelayMs, reconnectText } from "./backoff.js";
import { connectWebRTC, connectWS } from "./carriers.js";
import { FilesPanel } from "./files.js";
import { ClientConnection, ErrorCode, MessageType, ProtocolError, State } from "./protocol.js";
import { segmentSummary, segmentText } from "./segments.js";
import { CodecError, FrameDecoder, InflateStream, unpackTiles } from "./tiles.js";

const CLIENT_AGENT = "simulacra-web/0.2";
const RESYNC_RETRY_MS = 2000;
const LATENCY_WINDOW = 50;
const MAX_PENDING_INPUTS = 1024;
const SWIPE_MIN_PX = 30;
const POINTER_INTERVAL_MS = 16; // at most ~60 pointer moves a second
const HOLD_REPEAT_MS = 50; // a held, unmoving pointer repeats 20 times a second
const STATUS_POLL_MS = 5000;
const MAX_REASON_CHARS = 200; // the server caps free text at 1024 characters
const TOKEN_KEY = "simulacra.token";

const params = new URLSearchParams(location.search);
const requestedTransport = params.get("transport");

const ARROWS = {
  ArrowLeft: "ArrowLeft",
  ArrowRight: "ArrowRight",
  ArrowUp: "ArrowUp",
  ArrowDown: "ArrowDown",
  a: "ArrowLeft",
  d: "ArrowRight",
  w: "ArrowUp",
  s: "ArrowDown",
};

// Per-app controls; the digit keys follow the sand app's own (1 sand ... 4 empty).
const APP_TOOLS = {
  sand: {
    materials: [
      ["sand", "1"],
      ["water", "2"],
      ["wall", "3"],
      ["empty", "4"],
    ],
    initial: "sand",
  },
};

// Keys an app reads besides the arrows, sent as they are.
const APP_KEYS = {
  viewer: new Set(["PageUp", "PageDown", "Home", "End", " "]),
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
  acks: 0, // Ack messages sent (cumulative: fewer than frames on a steady stream)
  skippedFrames: 0,
  inputs: { key: 0, pointer: 0, select: 0 },
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
  lastChecksumKind: null, // "crc32" (Frame) or "tile-table" (PackedFrame)
  role: "",
  user: "",
  app: "",
  apps: [],
  session: "",
  width: 0,
  height: 0,
  scale: 1,
  material: "",
  reconnectAttempt: 0,
  reconnectDelays: [],
  segments: null,
  stats,
};
window.simulacra = view;

let token = "";
let wantedApp = params.get("app") ?? "";
let wantedSession = params.get("session") ?? "";
// Packed frames (one deflate stream per connection) unless ?mode=tiles asks for plain ones.
const wantedMode = params.get("mode") === "tiles" ? "tiles" : "packed";
let generation = 0; // bumps on every (re)connect; callbacks of older ones do nothing
let carrier = null;
let conn = null;
let decoder = null;
let inflater = null;
let imageData = null;
let inputSeq = 0;
let inputRefused = ""; // the server's reason, once it refused this session's Input
let awaitingKeyframe = false;
let lastResyncAt = 0;
let attempt = 0;
let reconnectTimer = null;
const pendingInputs = new Map();
const latencies = [];
const frameTimes = [];
const byteLog = [];

// ---------------------------------------------------------------- status UI

function showStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${cls}`;
  $("retry-now").hidden = cls !== "reconnecting";
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
  $("stat-segments").textContent = segmentText(view.segments);
}
setInterval(refreshStats, 500);

// An integer scale in device pixels, so every framebuffer pixel covers the same
// square of screen pixels, when that wastes at most a quarter of the room
// (a phone at 1.9x would otherwise show 1x); else the browser scales, with
// image-rendering: pixelated. `view.scale` is device pixels per pixel.
const INTEGER_SCALE_MIN_FILL = 0.75;

function fitCanvas() {
  if (!view.width) return;
  const box = $("screen-box").getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const room = Math.min((box.width - 16) / view.width, (box.height - 16) / view.height) * dpr;
  const whole = Math.floor(room);
  const scale = Math.max(whole >= 1 && whole / room >= INTEGER_SCALE_MIN_FILL ? whole : room, 0.1);
  view.scale = scale;
  canvas.style.width = `${(view.width * scale) / dpr}px`;
  canvas.style.height = `${(view.height * scale) / dpr}px`;
}
new ResizeObserver(fitCanvas).observe($("screen-box"));
window.addEventListener("resize", fitCanvas); // a zoom changes devicePixelRatio, not the box

// ---------------------------------------------------------------- token

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY) ?? "";
}

// The token lives in this tab (so a reload reconnects) and only in
// localStorage when the user asked to be remembered.
function keepToken(value, remember) {
  sessionStorage.setItem(TOKEN_KEY, value);
  if (remember) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  if (params.has("token")) {
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}?${params}`);
  }
}

function askForToken(message) {
  $("connect-error").textContent = message;
  $("connect-token").value = "";
  $("connect-remember").checked = localStorage.getItem(TOKEN_KEY) !== null;
  const dialog = $("connect");
  if (!dialog.open) dialog.showModal();
  $("connect-token").focus();
}

$("connect-form").addEventListener("submit", (ev) => {
  const value = $("connect-token").value.trim();
  if (!value) {
    ev.preventDefault();
    return;
  }
  keepToken(value, $("connect-remember").checked);
  token = value;
  restart();
});

$("sign-out").addEventListener("click", () => {
  forgetToken();
  token = "";
  teardown("signed out");
  closeFinal("signed out");
  files.signOut();
  askForToken("");
});

// ---------------------------------------------------------------- app picker

function setQuery(name, value) {
  if (value) params.set(name, value);
  else params.delete(name);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

function fillAppPicker() {
  const picker = $("app-picker");
  const names = [...view.apps];
  if (view.app && !names.includes(view.app)) names.push(view.app);
  picker.replaceChildren(
    ...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }),
  );
  picker.value = view.app;
  picker.disabled = names.length < 2;
}

/** Stream `app` (session "" = the user's own) instead; reconnects at once. */
export function openApp(app, session = "") {
  wantedApp = app;
  wantedSession = session;
  setQuery("app", app);
  setQuery("session", session);
  restart();
}

$("app-picker").addEventListener("change", (ev) => {
  canvas.focus(); // arrows go to the app again, not to the picker
  openApp(ev.target.value);
});

function showTools(app) {
  const tools = APP_TOOLS[app];
  $("tools").hidden = !tools;
  const box = $("materials");
  box.replaceChildren();
  view.material = tools ? tools.initial : "";
  if (!tools) return;
  for (const [material, key] of tools.materials) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `material m-${material}`;
    button.dataset.material = material;
    button.setAttribute("role", "radio");
    button.title = `${material} (key ${key})`;
    button.innerHTML = `<span class="swatch"></span>${material} <kbd>${key}</kbd>`;
    button.addEventListener("click", () => selectMaterial(material));
    box.append(button);
  }
  markMaterial();
}

function markMaterial() {
  for (const button of $("materials").children) {
    button.setAttribute("aria-checked", String(button.dataset.material === view.material));
  }
}

function selectMaterial(material) {
  view.material = material;
  markMaterial();
  sendInput("select", material, 0, 0, 0);
  canvas.focus();
}

// ---------------------------------------------------------------- server status

async function fetchStatus() {
  const reply = await fetch("/api/status", {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (!reply.ok) return { code: reply.status, body: null };
  let body = null;
  try {
    body = await reply.json();
  } catch {
    // A status that is not JSON only costs us the overlay's segment figures.
  }
  return { code: reply.status, body };
}

function noteStatus(body) {
  view.serverStatus = body;
  view.segments = segmentSummary(body, view.app || wantedApp || body?.default_app || "");
  refreshStats();
}

async function refreshServerStatus() {
  if (view.state !== "streaming" || !token) return;
  try {
    const { body } = await fetchStatus();
    if (body) noteStatus(body);
  } catch {
    // The stream itself notices a lost server; the overlay just keeps its figures.
  }
}
setInterval(refreshServerStatus, STATUS_POLL_MS);

// ---------------------------------------------------------------- session

function send(msg) {
  if (!carrier || !conn) return;
  carrier.send(conn.send(msg));
}

// Acks are cumulative (docs/protocol.md): one for every other verified frame, a
// keyframe's at once, none later than ACK_DELAY_MS. Each Ack is a DTLS record and an
// SCTP SACK back on both ends, so half of them is a real saving for a busy server.
const ACK_EVERY = 2;
const ACK_DELAY_MS = 50;
let owedSeq = 0; // newest verified frame not yet acknowledged (0: none)
let owedCount = 0;
let ackTimer = null;

function owe(seq, keyframe) {
  owedSeq = seq;
  owedCount += 1;
  if (keyframe || owedCount >= ACK_EVERY) flushAck();
  else if (ackTimer === null) ackTimer = setTimeout(flushAck, ACK_DELAY_MS);
}

function flushAck() {
  clearTimeout(ackTimer);
  ackTimer = null;
  if (owedSeq && conn && conn.state === State.STREAMING) {
    send({ type: MessageType.Ack, seq: owedSeq });
    stats.acks += 1;
  }
  owedSeq = 0;
  owedCount = 0;
}

function forgetAcks() {
  clearTimeout(ackTimer);
  ackTimer = null;
  owedSeq = 0;
  owedCount = 0;
}

function teardown(reason) {
  generation += 1;
  forgetAcks();
  clearInterval(reconnectTimer);
  reconnectTimer = null;
  if (carrier) {
    const c = carrier;
    if (conn && conn.state === State.STREAMING) {
      try {
        c.send(conn.send({ type: MessageType.Bye, reason }));
      } catch {
        // Already going away; closing below is all that is left.
      }
    }
    carrier = null;
    c.close();
  }
  conn = null;
}

function closeFinal(reason) {
  view.state = "closed";
  view.closeReason = reason;
  showStatus(`closed: ${reason}`, "closed");
  refreshStats();
}

function scheduleReconnect(reason) {
  teardown(reason);
  attempt += 1;
  const delay = reconnectDelayMs(attempt);
  const at = performance.now() + delay;
  view.state = "reconnecting";
  view.closeReason = reason;
  view.reconnectAttempt = attempt;
  view.reconnectDelays.push(delay);
  const gen = generation;
  const tick = () => {
    if (gen !== generation) return;
    const left = at - performance.now();
    if (left <= 0) {
      connect();
      return;
    }
    showStatus(`${reason} · ${reconnectText(left)}`, "reconnecting");
  };
  tick();
  reconnectTimer = setInterval(tick, 200);
  refreshStats();
}

// Why the session ended decides what comes next: a refusal stays closed, a loss retries.
function endSession(reason, final) {
  if (view.state === "closed") return;
  if (final) {
    teardown(reason);
    closeFinal(reason);
  } else {
    scheduleReconnect(reason);
  }
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
  endSession(err.message, false);
}

function setupFramebuffer(width, height, dictionarySlots) {
  decoder = new FrameDecoder(width, height, { dictionarySlots });
  inflater?.close();
  inflater = new InflateStream();
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
  const dec = decoder;
  const inf = inflater;
  let written;
  try {
    let tiles = msg.tiles;
    if (msg.type === MessageType.PackedFrame) {
      const raw = await inf.inflate(msg.data, msg.size, { keyframe: msg.keyframe });
      if (dec !== decoder) return;
      tiles = unpackTiles(raw, msg.count, dec.tileCount);
    }
    written = await dec.apply(tiles, { keyframe: msg.keyframe });
  } catch (err) {
    if (dec !== decoder) return;
    if (!(err instanceof CodecError)) throw err;
    view.mismatches += 1;
    view.checksumOk = false;
    requestResync(`bad tile: ${err.message}`);
    return;
  }
  // A new session (app switch, reconnect) replaced the decoder while this frame decoded.
  if (dec !== decoder) return;
  if (written.length) {
    decoder.paint(imageData, written);
    ctx.putImageData(imageData, 0, 0);
  }
  view.frames += 1;
  frameTimes.push(now);
  const packed = msg.type === MessageType.PackedFrame;
  const crc = packed ? decoder.tableChecksum() : decoder.checksum();
  view.lastChecksum = crc;
  view.lastChecksumKind = packed ? "tile-table" : "crc32";
  if (crc !== msg.checksum) {
    view.mismatches += 1;
    view.checksumOk = false;
    requestResync("checksum mismatch");
    return;
  }
  view.checksumOk = true;
  awaitingKeyframe = false;
  owe(msg.seq, msg.keyframe);
  for (const [seq, sentAt] of pendingInputs) {
    if (seq > msg.inputSeq) break;
    latencies.push(now - sentAt);
    if (latencies.length > LATENCY_WINDOW) latencies.shift();
    pendingInputs.delete(seq);
  }
}

function onWelcome(msg) {
  if (msg.tileSize !== 16) throw new ProtocolError(`tile_size ${msg.tileSize} is not 16`);
  attempt = 0;
  view.state = "streaming";
  const kind = view.transport;
  showStatus(kind === "webrtc" || requestedTransport === "ws" ? kind : "ws fallback", kind);
  view.role = msg.role;
  view.user = msg.user;
  view.app = msg.app;
  view.apps = msg.apps;
  view.session = msg.session;
  view.closeReason = "";
  // Counted per session: "verified" means this session's picture, not the last one's.
  view.frames = 0;
  view.checksumOk = null;
  view.lastChecksum = null;
  $("app-name").textContent = `${msg.session} · ${msg.user} · ${msg.role}`;
  document.title = `${msg.app} · simulacra`;
  fillAppPicker();
  showTools(msg.app);
  setupFramebuffer(msg.width, msg.height, msg.dictionarySlots);
  // The app's emulators load on its first Hello: ask again now they are there.
  view.segments = view.serverStatus ? segmentSummary(view.serverStatus, msg.app) : null;
  refreshServerStatus();
  files.connected(token, msg.user);
}

async function onBytes(bytes) {
  stats.bytesReceived += bytes.length;
  byteLog.push([performance.now(), bytes.length]);
  const msg = conn.receiveData(bytes);
  switch (msg.type) {
    case MessageType.Welcome:
      onWelcome(msg);
      break;
    case MessageType.Frame:
    case MessageType.PackedFrame:
      await onFrame(msg);
      break;
    case MessageType.Bye:
      endSession(msg.reason || "server said bye", false);
      break;
    case MessageType.Error:
      if (conn.state === State.STREAMING) {
        // A refused Input (view role): the picture keeps coming; stop sending what is refused.
        inputRefused = msg.message;
        showStatus(`${view.transport} · input refused: ${msg.message}`, view.transport);
        break;
      }
      // The server's own trouble may pass; anything else would only be refused again.
      endSession(`error ${msg.code}: ${msg.message}`, msg.code !== ErrorCode.SERVER_ERROR);
      break;
    default:
      break;
  }
}

function startSession(c, gen) {
  carrier = c;
  conn = new ClientConnection();
  inputSeq = 0;
  inputRefused = "";
  pendingInputs.clear();
  awaitingKeyframe = false;
  forgetAcks(); // a new connection owes nothing to the old one
  view.transport = c.kind;
  view.mode = wantedMode;
  view.state = "hello";
  // A first start may compile the app's emulators before Welcome: say what we wait for.
  showStatus(`starting ${wantedApp || "app"}…`, "connecting");
  // Frames decode asynchronously (ZLIB tiles); a promise chain keeps them in order.
  let chain = Promise.resolve();
  c.onmessage = (bytes) => {
    chain = chain.then(() => gen === generation && onBytes(bytes)).catch((err) => {
      if (gen === generation) fail(err);
    });
  };
  c.onclose = (reason, final) => {
    chain = chain.then(() => gen === generation && endSession(reason, final));
  };
  send({
    type: MessageType.Hello,
    client: CLIENT_AGENT,
    app: wantedApp,
    session: wantedSession,
    mode: wantedMode,
  });
  refreshStats();
}

async function connect() {
  teardown("reconnecting");
  const gen = generation;
  if (!token) {
    closeFinal("no token (add ?token=... to the URL or enter it)");
    askForToken("");
    return;
  }
  view.state = "connecting";
  showStatus("connecting", "connecting");
  // The status call tells a wrong token (final) from a server that is not there (retry).
  let status;
  try {
    status = await fetchStatus();
  } catch {
    if (gen === generation) scheduleReconnect("server unreachable");
    return;
  }
  if (gen !== generation) return;
  if (status.code === 401 || status.code === 403) {
    closeFinal("invalid token");
    if (!params.has("token")) forgetToken();
    askForToken("That token was refused; check it and try again.");
    return;
  }
  // Any other answer means someone is there: the stream may work even when the status does not.
  if (status.body) noteStatus(status.body);
  if (requestedTransport !== "ws" && typeof RTCPeerConnection === "function") {
    try {
      const c = await connectWebRTC(token);
      if (gen !== generation) return c.close();
      startSession(c, gen);
      return;
    } catch (err) {
      if (gen !== generation) return;
      if (err.final || requestedTransport === "webrtc") {
        endSession(err.message, err.final);
        return;
      }
      view.fallbackReason = err.message;
      showStatus("connecting (ws fallback)", "connecting");
    }
  }
  try {
    const c = await connectWS(token);
    if (gen !== generation) return c.close();
    startSession(c, gen);
  } catch (err) {
    if (gen === generation) endSession(err.message, err.final);
  }
}

/** Drop the current connection (if any) and connect again now, backoff reset. */
function restart() {
  attempt = 0;
  view.state = "connecting";
  connect();
}

$("retry-now").addEventListener("click", () => {
  if (view.state === "reconnecting") connect();
});

// ---------------------------------------------------------------- input

function sendInput(kind, key, x, y, buttons) {
  // A view-role user may still page a viewer; the server says (403) when it refuses.
  if (!conn || conn.state !== State.STREAMING || inputRefused) return;
  inputSeq += 1;
  pendingInputs.set(inputSeq, performance.now());
  if (pendingInputs.size > MAX_PENDING_INPUTS) {
    pendingInputs.delete(pendingInputs.keys().next().value);
  }
  stats.inputs[kind] += 1;
  send({ type: MessageType.Input, seq: inputSeq, kind, key, x, y, buttons });
}

function typingIntoForm(ev) {
  const t = ev.target;
  return t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
}

window.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || typingIntoForm(ev)) return;
  if (document.querySelector("dialog[open]")) return;
  const tools = APP_TOOLS[view.app];
  const material = tools?.materials.find(([, key]) => key === ev.key);
  if (material) {
    ev.preventDefault();
    selectMaterial(material[0]);
    return;
  }
  const key = APP_KEYS[view.app]?.has(ev.key)
    ? ev.key
    : ARROWS[ev.key.length === 1 ? ev.key.toLowerCase() : ev.key];
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

// Drags are throttled to one Input per POINTER_INTERVAL_MS, the latest position
// winning; presses and releases go at once so no click is lost.
let pendingMove = null;
let moveTimer = null;
let lastMoveAt = -Infinity;
let swipeStart = null;

// In apps with tools (sand pours), a button held still keeps pouring.
let held = null;
let holdTimer = null;

function sendPointer(point, buttons) {
  if (!view.width) return;
  lastMoveAt = performance.now();
  held = buttons ? { point, buttons } : null;
  sendInput("pointer", "", point[0], point[1], buttons);
}

function stopHolding() {
  clearInterval(holdTimer);
  holdTimer = null;
  held = null;
}

function startHolding() {
  clearInterval(holdTimer);
  if (!APP_TOOLS[view.app]) return;
  holdTimer = setInterval(() => {
    if (held && performance.now() - lastMoveAt >= HOLD_REPEAT_MS) sendPointer(held.point, held.buttons);
  }, HOLD_REPEAT_MS);
}

function flushMove() {
  moveTimer = null;
  const move = pendingMove;
  pendingMove = null;
  if (move) sendPointer(move.point, move.buttons);
}

canvas.addEventListener("pointerdown", (ev) => {
  canvas.focus();
  try {
    canvas.setPointerCapture(ev.pointerId); // a drag that leaves the canvas keeps pouring
  } catch {
    // Pointers the browser does not track (synthetic events) cannot be captured.
  }
  if (ev.pointerType === "touch") swipeStart = [ev.clientX, ev.clientY];
  pendingMove = null;
  sendPointer(framebufferPoint(ev), ev.buttons);
  startHolding();
});

canvas.addEventListener("pointermove", (ev) => {
  if (ev.buttons === 0 || !view.width) return;
  pendingMove = { point: framebufferPoint(ev), buttons: ev.buttons };
  const wait = lastMoveAt + POINTER_INTERVAL_MS - performance.now();
  if (wait <= 0) flushMove();
  else if (moveTimer === null) moveTimer = setTimeout(flushMove, wait);
});

canvas.addEventListener("pointerup", (ev) => {
  stopHolding();
  clearTimeout(moveTimer);
  flushMove();
  sendPointer(framebufferPoint(ev), ev.buttons);
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
  stopHolding();
  clearTimeout(moveTimer);
  moveTimer = null;
  pendingMove = null;
  swipeStart = null;
});

window.addEventListener("pagehide", () => teardown("page closed"));

// ---------------------------------------------------------------- start

const files = new FilesPanel({ openEntry: (entryId) => openApp("viewer", entryId) });
view.files = files.view;

token = params.get("token") ?? storedToken();
connect();

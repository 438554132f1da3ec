// The two carriers of the protocol: a WebRTC data channel, or the WebSocket itself.
//
//   WS /signal?token=T&transport=webrtc ◄── {"type":"ice","iceServers"} (checked) ──
//        RTCPeerConnection({iceServers}) ── {"type":"offer"} (all candidates) ──► server
//        ◄── {"type":"answer"} ── data channel "sim" opens ──► resolve(carrier)
//   WS /signal?token=T&transport=ws ──► open ──► resolve(carrier): binary frames
//
// A carrier is {kind, send(bytes), close(), onmessage(bytes), onclose(reason, final)}.
// `final` says retrying cannot help (the server refused us on purpose); a failed
// connect rejects with an Error whose `final` says the same.

export const WEBRTC_TIMEOUT_MS = 4000;

// Close codes 4xxx are the server's refusals; a hello timeout is worth retrying.
const RETRYABLE_CLOSE_CODES = new Set([4408]);

export function isFinalClose(code) {
  return code >= 4000 && code < 5000 && !RETRYABLE_CLOSE_CODES.has(code);
}

export function signalUrl(token, transport) {
  const url = new URL("/signal", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ token, transport }).toString();
  return url.href;
}

function closeText(ev) {
  if (ev.reason) return ev.reason.startsWith(String(ev.code)) ? ev.reason : `${ev.code} ${ev.reason}`;
  if (ev.code === 1006) return "signaling refused or lost";
  return `closed (${ev.code})`;
}

function failure(reason, final) {
  const err = new Error(reason);
  err.final = final;
  return err;
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

// The server's {"type":"ice","iceServers":[...]}: checked as strictly as the headless
// client does (protocol/ice.py), so a bad list fails here, not inside RTCPeerConnection.
export const MAX_ICE_SERVERS = 16;
const MAX_ICE_URL_CHARS = 256;
const MAX_ICE_CREDENTIAL_CHARS = 512;
const ICE_URL = /^(stuns?|turns?):[A-Za-z0-9._-]+(:[0-9]{1,5})?(\?transport=(udp|tcp))?$/;
const ICE_KEYS = new Set(["urls", "username", "credential"]);

function checkIceUrl(url) {
  if (typeof url !== "string" || url.length > MAX_ICE_URL_CHARS) {
    throw new Error(`ICE server URL must be a string of at most ${MAX_ICE_URL_CHARS} characters`);
  }
  const m = ICE_URL.exec(url);
  const port = m && m[2] ? Number(m[2].slice(1)) : 1;
  // Only TURN takes a transport, and turns: runs over TLS, i.e. TCP, never udp.
  const badTransport =
    m && m[4] && (!m[1].startsWith("turn") || (m[1] === "turns" && m[4] === "udp"));
  if (!m || port < 1 || port > 65535 || badTransport) {
    const shown = JSON.stringify(url.slice(0, 64));
    throw new Error(`not a stun:, stuns:, turn: or turns: URL: ${shown}`);
  }
  return url;
}

export function checkIceServers(list) {
  if (!Array.isArray(list)) throw new Error("iceServers must be a list");
  if (list.length > MAX_ICE_SERVERS) throw new Error(`more than ${MAX_ICE_SERVERS} ICE servers`);
  return list.map((entry) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new Error("each ICE server must be an object");
    }
    for (const key of Object.keys(entry)) {
      if (!ICE_KEYS.has(key)) {
        throw new Error(`unexpected ICE server key ${JSON.stringify(key.slice(0, 64))}`);
      }
    }
    const urls = typeof entry.urls === "string" ? [entry.urls] : entry.urls;
    if (!Array.isArray(urls) || urls.length < 1 || urls.length > MAX_ICE_SERVERS) {
      throw new Error(`ICE server urls must be a string or 1..${MAX_ICE_SERVERS} strings`);
    }
    const server = { urls: urls.map(checkIceUrl) };
    if ((entry.username === undefined) !== (entry.credential === undefined)) {
      throw new Error("an ICE server has a username and a credential, or neither");
    }
    for (const key of ["username", "credential"]) {
      if (entry[key] === undefined) continue;
      if (typeof entry[key] !== "string" || entry[key].length > MAX_ICE_CREDENTIAL_CHARS) {
        const limit = MAX_ICE_CREDENTIAL_CHARS;
        throw new Error(`ICE server ${key} must be a string of at most ${limit} characters`);
      }
      server[key] = entry[key];
    }
    return server;
  });
}

export function connectWebRTC(token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalUrl(token, "webrtc"));
    // Built once the server's ICE servers arrive: they are its first message.
    let pc = null;
    let channel = null;
    let open = false;
    let closed = false;
    const c = {
      kind: "webrtc",
      onmessage: () => {},
      onclose: () => {},
      send: (bytes) => channel.send(bytes),
      close: () => {
        closed = true;
        if (channel) channel.close();
        if (pc) pc.close();
        ws.close(1000, "bye");
      },
    };
    const fail = (reason, final = false) => {
      if (closed) return;
      clearTimeout(timer);
      c.close();
      if (open) c.onclose(reason, final);
      else reject(failure(reason, final));
    };
    const timer = setTimeout(
      () => fail(`data channel not open within ${WEBRTC_TIMEOUT_MS / 1000} s`),
      WEBRTC_TIMEOUT_MS,
    );
    const offer = async (iceServers) => {
      try {
        pc = new RTCPeerConnection({ iceServers });
      } catch (err) {
        fail(`bad ICE server list: ${err.message}`);
        return;
      }
      channel = pc.createDataChannel("sim");
      channel.binaryType = "arraybuffer";
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
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await waitIceComplete(pc);
        if (!closed) ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
      } catch (err) {
        fail(`offer failed: ${err.message}`);
      }
    };
    ws.onmessage = async (ev) => {
      if (closed || typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        fail("signaling sent bad JSON", true);
        return;
      }
      if (typeof msg !== "object" || msg === null) {
        fail("signaling sent a non-object", true);
        return;
      }
      if (msg.type === "ice" && pc === null) {
        let servers;
        try {
          servers = checkIceServers(msg.iceServers);
        } catch (err) {
          // WebRTC cannot start, but the WebSocket carrier may still work: not final.
          fail(`bad ICE server list: ${err.message}`);
          return;
        }
        await offer(servers);
      } else if (msg.type === "answer" && pc !== null) {
        try {
          await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        } catch (err) {
          fail(`bad answer: ${err.message}`);
        }
      } else if (msg.type === "error") {
        fail(`${msg.code} ${msg.message}`, true);
      } else if (pc === null) {
        const type = JSON.stringify(String(msg.type).slice(0, 64));
        fail(`signaling sent ${type} before the ICE servers`);
      }
    };
    // Once the channel is up the signaling socket has done its job: the
    // session lives and dies with the data channel.
    ws.onclose = (ev) => {
      if (!open) fail(closeText(ev), isFinalClose(ev.code));
    };
  });
}

export function connectWS(token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalUrl(token, "ws"));
    ws.binaryType = "arraybuffer";
    let open = false;
    let errorText = "";
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
        if (msg.type === "error") errorText = `${msg.code} ${msg.message}`;
      } catch {
        // A text frame that is not JSON carries nothing we can act on.
      }
    };
    ws.onclose = (ev) => {
      const reason = errorText || closeText(ev);
      const final = Boolean(errorText) || isFinalClose(ev.code);
      if (open) c.onclose(reason, final);
      else reject(failure(reason, final));
    };
  });
}

// The two carriers of the protocol: a WebRTC data channel, or the WebSocket itself.
//
//   WS /signal?token=T&transport=webrtc ── {"type":"offer"} (all candidates) ──► server
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

export function connectWebRTC(token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalUrl(token, "webrtc"));
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
      if (!open) fail(closeText(ev), isFinalClose(ev.code));
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

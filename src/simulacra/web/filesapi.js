// The files API client: one WebSocket at /api?token=T (docs/protocol.md, "Files API").
//
//   request(op, fields) ── text {"id":n,"op":...} ──► server ──► {"id":n,"ok":true,...} | {"id":n,"error":{...}}
//   upload(file):  sha256 ─► put_begin ─► {upload:u, chunk_bytes, window}
//                  bin [u:u32 offset:u64] bytes ──► ... ◄── {"op":"chunk_ack","upload":u,"offset":o}
//                  (at most `window` chunks unacknowledged) ─► put_commit ─► {entry}
//   download(entry): get ─► {size} ◄── bin [n:u32 offset:u64] bytes ... (size bytes in all)
//                    ─► sha256 of what arrived == the entry's sha256, or FilesApiError
//   pushed:        {"op":"inbox","entry":{...}} ─► onInbox(item)
//
// Every reply, chunk and download is bounded: requests by MAX_REPLY_CHARS,
// downloads by the size the server announced (and MAX_DOWNLOAD_BYTES).

import { Sha256 } from "./sha256.js";

export const CHUNK_HEADER_BYTES = 12;
export const MAX_UPLOAD_BYTES = 100 * 1024 * 1024;
export const MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024;
export const MAX_REPLY_CHARS = 4 * 1024 * 1024;
const DEFAULT_CHUNK_BYTES = 256 * 1024;
const DEFAULT_WINDOW = 8;
const OPEN_TIMEOUT_MS = 5000;
const HASH_SLICE_BYTES = 4 * 1024 * 1024;

export class FilesApiError extends Error {
  constructor(message, type = "SimulacraError") {
    super(message);
    this.name = "FilesApiError";
    this.type = type;
  }
}

/** [id: u32 big-endian][offset: u64 big-endian] then the payload. */
export function encodeChunk(id, offset, payload) {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new RangeError(`chunk id ${id}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`chunk offset ${offset}`);
  const out = new Uint8Array(CHUNK_HEADER_BYTES + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, id);
  dv.setBigUint64(4, BigInt(offset));
  out.set(payload, CHUNK_HEADER_BYTES);
  return out;
}

/** {id, offset, payload} of a binary frame; FilesApiError when it is too short. */
export function decodeChunk(bytes) {
  if (bytes.length < CHUNK_HEADER_BYTES) {
    throw new FilesApiError(`binary frame of ${bytes.length} bytes is shorter than its header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offset = dv.getBigUint64(4);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new FilesApiError("chunk offset too large");
  return { id: dv.getUint32(0), offset: Number(offset), payload: bytes.subarray(CHUNK_HEADER_BYTES) };
}

/** Hex SHA-256 of a Blob, read a slice at a time (a large file never sits in memory whole). */
export async function blobSha256(blob, sliceBytes = HASH_SLICE_BYTES) {
  const hash = new Sha256();
  for (let at = 0; at < blob.size; at += sliceBytes) {
    hash.update(new Uint8Array(await blob.slice(at, at + sliceBytes).arrayBuffer()));
  }
  return hash.hexdigest();
}

export function filesApiUrl(token) {
  const url = new URL("/api", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ token }).toString();
  return url.href;
}

export class FilesApi {
  constructor(token, { onInbox = () => {}, onClose = () => {} } = {}) {
    this.token = token;
    this.onInbox = onInbox;
    this.onClose = onClose;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.uploads = new Map(); // upload id -> {ack(offset), fail(err)}
    this.downloads = new Map(); // request id -> sink
    this.closed = false;
  }

  /** Resolves once the socket is open; rejects when the server has no files API. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(filesApiUrl(this.token));
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      let opened = false;
      const timer = setTimeout(() => ws.close(), OPEN_TIMEOUT_MS);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        resolve(this);
      };
      ws.onmessage = (ev) => this.receive(ev.data);
      ws.onclose = (ev) => {
        clearTimeout(timer);
        const reason = ev.reason || (opened ? "files connection lost" : "no files API on this server");
        this.shutdown(new FilesApiError(reason, "TransportError"));
        if (opened) this.onClose(reason);
        else reject(new FilesApiError(reason, "TransportError"));
      };
    });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000, "bye");
  }

  shutdown(err) {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(err);
    for (const u of this.uploads.values()) u.fail(err);
    for (const d of this.downloads.values()) d.fail(err);
    this.pending.clear();
    this.uploads.clear();
    this.downloads.clear();
  }

  receive(data) {
    if (data instanceof ArrayBuffer) {
      this.receiveChunk(new Uint8Array(data));
      return;
    }
    if (data.length > MAX_REPLY_CHARS) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not JSON: nothing to act on
    }
    if (msg === null || typeof msg !== "object") return;
    if (Number.isInteger(msg.id) && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new FilesApiError(String(msg.error.message), String(msg.error.type)));
      else p.resolve(msg);
      return;
    }
    if (msg.op === "inbox" && msg.entry) this.onInbox(msg.entry);
    else if (msg.op === "chunk_ack") this.uploads.get(msg.upload)?.ack(msg.offset);
    else if (msg.op === "chunk_error") {
      const err = new FilesApiError(String(msg.error?.message ?? "chunk refused"), msg.error?.type);
      this.uploads.get(msg.upload)?.fail(err);
    } else if (msg.op === "uploads_dropped") {
      for (const u of msg.uploads ?? []) this.uploads.get(u)?.fail(new FilesApiError(`upload dropped: ${msg.reason}`));
    }
  }

  receiveChunk(bytes) {
    let chunk;
    try {
      chunk = decodeChunk(bytes);
    } catch {
      return;
    }
    this.downloads.get(chunk.id)?.chunk(chunk.offset, chunk.payload);
  }

  send(data) {
    if (this.closed || !this.ws || this.ws.readyState !== WebSocket.OPEN) {
      throw new FilesApiError("files connection is not open", "TransportError");
    }
    this.ws.send(data);
  }

  /** One request; resolves with the reply object, rejects with FilesApiError. */
  request(op, fields = {}, { before } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (before) before(id);
      try {
        this.send(JSON.stringify({ ...fields, id, op }));
      } catch (err) {
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  /**
   * Upload `file` (a File or Blob with a name); `onProgress(sent, size)` after
   * each acknowledged chunk. Resolves with the new entry.
   */
  async upload(file, name, onProgress = () => {}) {
    if (file.size > MAX_UPLOAD_BYTES) {
      throw new FilesApiError(`${name} is ${file.size} bytes; the limit is ${MAX_UPLOAD_BYTES}`, "PayloadTooBig");
    }
    const sha256 = await blobSha256(file);
    const begun = await this.request("put_begin", { name, size: file.size, type: file.type, sha256 });
    const uid = begun.upload;
    const chunkBytes = Math.min(begun.chunk_bytes || DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_BYTES);
    const window = Math.max(1, Math.min(begun.window || DEFAULT_WINDOW, 64));
    let acked = 0;
    let wake = null;
    let failure = null;
    this.uploads.set(uid, {
      ack: (offset) => {
        acked = offset;
        onProgress(acked, file.size);
        wake?.();
      },
      fail: (err) => {
        failure = err;
        wake?.();
      },
    });
    const waitForAck = () =>
      new Promise((resolve) => {
        wake = () => {
          wake = null;
          resolve();
        };
      });
    try {
      let sent = 0;
      while (sent < file.size) {
        // Flow control: no more than `window` chunks past the last acknowledged byte.
        while (!failure && sent - acked >= window * chunkBytes) await waitForAck();
        if (failure) throw failure;
        const end = Math.min(sent + chunkBytes, file.size);
        const payload = new Uint8Array(await file.slice(sent, end).arrayBuffer());
        this.send(encodeChunk(uid, sent, payload));
        sent = end;
      }
      while (!failure && acked < file.size) await waitForAck();
      if (failure) throw failure;
      const done = await this.request("put_commit", { upload: uid });
      onProgress(file.size, file.size);
      return done.entry;
    } catch (err) {
      if (!(err instanceof FilesApiError && err.type === "TransportError")) {
        this.request("put_abort", { upload: uid }).catch(() => {});
      }
      throw err;
    } finally {
      this.uploads.delete(uid);
    }
  }

  /** The exact bytes of an entry the user may download, as a Blob. */
  download(entryId, type = "application/octet-stream") {
    let sink;
    const done = new Promise((resolve, reject) => {
      const parts = [];
      let received = 0;
      let size = null;
      const finish = () => {
        if (size !== null && received === size) resolve(new Blob(parts, { type }));
      };
      sink = {
        started: (n) => {
          if (!Number.isSafeInteger(n) || n < 0 || n > MAX_DOWNLOAD_BYTES) {
            reject(new FilesApiError(`download of ${n} bytes is past the limit`, "PayloadTooBig"));
            return;
          }
          size = n;
          finish();
        },
        chunk: (offset, payload) => {
          if (offset !== received || (size !== null && received + payload.length > size)) {
            reject(new FilesApiError("download chunks out of order or past the announced size"));
            return;
          }
          parts.push(payload.slice());
          received += payload.length;
          finish();
        },
        fail: reject,
      };
    });
    let rid = null;
    const register = (id) => {
      rid = id;
      this.downloads.set(id, sink);
    };
    const header = this.request("get", { entry: entryId }, { before: register });
    header.then(
      (reply) => sink.started(reply.size),
      (err) => sink.fail(err),
    );
    return done
      .then(async (blob) => {
        // The server checked every block; the bytes are checked again where they land.
        const { entry } = await header;
        if (entry?.sha256 && blob.size === entry.size && (await blobSha256(blob)) !== entry.sha256) {
          throw new FilesApiError("downloaded bytes do not match the file's sha256", "CorruptArtifact");
        }
        return blob;
      })
      .finally(() => this.downloads.delete(rid));
  }
}

// A minimal msgpack codec: exactly the subset docs/protocol.md uses.
//
//   JS value ──encode()──► Uint8Array          Uint8Array ──decode()──► JS value
//
//   nil <-> null           bool <-> boolean      int <-> Number (safe integers only)
//   str <-> string (UTF-8) bin <-> Uint8Array    array <-> Array     map <-> Map
//
// Floats, ext types and integers beyond Number.MAX_SAFE_INTEGER are rejected
// with MsgpackError: the protocol never sends them, so seeing one means the
// bytes are not ours. Every decode has a byte limit (PayloadTooBig).

export const MAX_DECODE_BYTES = 1 << 20;
const MAX_DEPTH = 32;

export class MsgpackError extends Error {
  constructor(message) {
    super(message);
    this.name = "MsgpackError";
  }
}

export class PayloadTooBig extends MsgpackError {
  constructor(message) {
    super(message);
    this.name = "PayloadTooBig";
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  reserve(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v) {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }

  tagged(tag, width, v) {
    this.reserve(1 + width);
    this.buf[this.pos++] = tag;
    if (width === 1) this.view.setUint8(this.pos, v);
    else if (width === 2) this.view.setUint16(this.pos, v);
    else if (width === 4) this.view.setUint32(this.pos, v);
    else this.view.setBigUint64(this.pos, BigInt(v));
    this.pos += width;
  }

  signed(tag, width, v) {
    this.reserve(1 + width);
    this.buf[this.pos++] = tag;
    if (width === 1) this.view.setInt8(this.pos, v);
    else if (width === 2) this.view.setInt16(this.pos, v);
    else if (width === 4) this.view.setInt32(this.pos, v);
    else this.view.setBigInt64(this.pos, BigInt(v));
    this.pos += width;
  }

  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

// Same choices as msgpack-python's packb (smallest form, str8 allowed), so the
// two produce identical bytes for the same value.
function encodeInt(w, v) {
  if (!Number.isSafeInteger(v)) throw new MsgpackError(`not a safe integer: ${v}`);
  if (v >= 0) {
    if (v < 0x80) w.u8(v);
    else if (v <= 0xff) w.tagged(0xcc, 1, v);
    else if (v <= 0xffff) w.tagged(0xcd, 2, v);
    else if (v <= 0xffffffff) w.tagged(0xce, 4, v);
    else w.tagged(0xcf, 8, v);
  } else if (v >= -32) w.u8(v & 0xff);
  else if (v >= -0x80) w.signed(0xd0, 1, v);
  else if (v >= -0x8000) w.signed(0xd1, 2, v);
  else if (v >= -0x80000000) w.signed(0xd2, 4, v);
  else w.signed(0xd3, 8, v);
}

function encodeLength(w, n, fix, fixMax, tags) {
  if (fix !== null && n <= fixMax) w.u8(fix | n);
  else if (tags[0] !== null && n <= 0xff) w.tagged(tags[0], 1, n);
  else if (n <= 0xffff) w.tagged(tags[1], 2, n);
  else if (n <= 0xffffffff) w.tagged(tags[2], 4, n);
  else throw new MsgpackError("length too large");
}

function encodeValue(w, v, depth) {
  if (depth > MAX_DEPTH) throw new MsgpackError("nesting too deep");
  if (v === null || v === undefined) w.u8(0xc0);
  else if (v === false) w.u8(0xc2);
  else if (v === true) w.u8(0xc3);
  else if (typeof v === "number") encodeInt(w, v);
  else if (typeof v === "string") {
    const b = utf8Encoder.encode(v);
    encodeLength(w, b.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    w.bytes(b);
  } else if (v instanceof Uint8Array) {
    encodeLength(w, v.length, null, 0, [0xc4, 0xc5, 0xc6]);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    encodeLength(w, v.length, 0x90, 15, [null, 0xdc, 0xdd]);
    for (const item of v) encodeValue(w, item, depth + 1);
  } else if (v instanceof Map || Object.getPrototypeOf(v) === Object.prototype) {
    const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
    encodeLength(w, entries.length, 0x80, 15, [null, 0xde, 0xdf]);
    for (const [k, item] of entries) {
      encodeValue(w, k, depth + 1);
      encodeValue(w, item, depth + 1);
    }
  } else {
    throw new MsgpackError(`cannot encode ${Object.prototype.toString.call(v)}`);
  }
}

/** Encode a value to msgpack bytes. */
export function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 0);
  return w.buf.slice(0, w.pos);
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new MsgpackError("truncated msgpack data");
  }

  uint(width) {
    this.need(width);
    let v;
    if (width === 1) v = this.view.getUint8(this.pos);
    else if (width === 2) v = this.view.getUint16(this.pos);
    else if (width === 4) v = this.view.getUint32(this.pos);
    else {
      const big = this.view.getBigUint64(this.pos);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new MsgpackError("integer beyond 2^53");
      v = Number(big);
    }
    this.pos += width;
    return v;
  }

  int(width) {
    this.need(width);
    let v;
    if (width === 1) v = this.view.getInt8(this.pos);
    else if (width === 2) v = this.view.getInt16(this.pos);
    else if (width === 4) v = this.view.getInt32(this.pos);
    else {
      const big = this.view.getBigInt64(this.pos);
      if (big < BigInt(Number.MIN_SAFE_INTEGER) || big > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new MsgpackError("integer beyond 2^53");
      }
      v = Number(big);
    }
    this.pos += width;
    return v;
  }

  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(n) {
    try {
      return utf8Decoder.decode(this.take(n));
    } catch (err) {
      if (err instanceof MsgpackError) throw err;
      throw new MsgpackError("invalid UTF-8 in str");
    }
  }

  // Each element needs at least one byte, so a count past the remaining bytes
  // is a lie; checking first keeps a 4-byte header from allocating gigabytes.
  count(n, perItem) {
    if (n * perItem > this.bytes.length - this.pos) throw new MsgpackError("truncated msgpack data");
    return n;
  }

  array(n, depth) {
    this.count(n, 1);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    this.count(n, 2);
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      if (k !== null && typeof k === "object") throw new MsgpackError("map key must be a scalar");
      out.set(k, this.value(depth + 1));
    }
    return out;
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw new MsgpackError("nesting too deep");
    const b = this.uint(1);
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f, depth);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f, depth);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.take(this.uint(1)).slice();
      case 0xc5:
        return this.take(this.uint(2)).slice();
      case 0xc6:
        return this.take(this.uint(4)).slice();
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf:
        return this.uint(8);
      case 0xd0:
        return this.int(1);
      case 0xd1:
        return this.int(2);
      case 0xd2:
        return this.int(4);
      case 0xd3:
        return this.int(8);
      case 0xd9:
        return this.str(this.uint(1));
      case 0xda:
        return this.str(this.uint(2));
      case 0xdb:
        return this.str(this.uint(4));
      case 0xdc:
        return this.array(this.uint(2), depth);
      case 0xdd:
        return this.array(this.uint(4), depth);
      case 0xde:
        return this.map(this.uint(2), depth);
      case 0xdf:
        return this.map(this.uint(4), depth);
      default:
        throw new MsgpackError(`unsupported msgpack type 0x${b.toString(16).padStart(2, "0")}`);
    }
  }
}

/**
 * Decode exactly one msgpack value from `bytes` (Uint8Array or ArrayBuffer).
 * Trailing bytes, unsupported types and inputs over `maxBytes` are errors.
 */
export function decode(bytes, maxBytes = MAX_DECODE_BYTES) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (data.length > maxBytes) {
    throw new PayloadTooBig(`msgpack data of ${data.length} bytes exceeds ${maxBytes}`);
  }
  const r = new Reader(data);
  const value = r.value(0);
  if (r.pos !== data.length) throw new MsgpackError("trailing bytes after msgpack value");
  return value;
}

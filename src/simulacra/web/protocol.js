// simulacra protocol v1 (docs/protocol.md), the browser's side of the wire.
//
//   {type, ...fields} ──encodeMessage()──► msgpack [1, type, f1, f2, ...] ──► channel
//   channel ──► bytes ──decodeMessage()──► {type, ...fields}  (validated, or ProtocolError)
//   PackedFrame (mode "packed"): its data is a chunk of the deflate stream (tiles.js)
//
//   client: IDLE ─send Hello─► HELLO_SENT ─recv Welcome─► STREAMING ─Bye/Error─► CLOSED
//           (an Error 403 while STREAMING refuses one request and keeps STREAMING)
//
// Field names are camelCase here (inputSeq, tileSize, dictionarySlots); the
// wire carries positions, not names, so nothing else changes.

import { decode, encode, MsgpackError, PayloadTooBig } from "./msgpack.js";

export const PROTOCOL_VERSION = 1;
export const MAX_MESSAGE_BYTES = 1 << 20;

export const MessageType = Object.freeze({
  Hello: 1,
  Welcome: 2,
  Input: 3,
  Frame: 4,
  Ack: 5,
  Error: 6,
  Bye: 7,
  Resync: 8,
  PackedFrame: 9,
});

export const ErrorCode = Object.freeze({
  MALFORMED: 400,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  OUT_OF_STATE: 409,
  PAYLOAD_TOO_BIG: 413,
  UNSUPPORTED_VERSION: 426,
  SERVER_ERROR: 500,
});

export class ProtocolError extends Error {
  constructor(message, code = ErrorCode.MALFORMED) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

const isInt = (v) => Number.isSafeInteger(v);
const isUint = (v) => Number.isSafeInteger(v) && v >= 0;
const isStr = (v) => typeof v === "string";
const isBool = (v) => typeof v === "boolean";
const isBytes = (v) => v instanceof Uint8Array;
const isTile = (t) =>
  Array.isArray(t) && t.length === 3 && isUint(t[0]) && isUint(t[1]) && isBytes(t[2]);
const isTiles = (v) => Array.isArray(v) && v.every(isTile);
const isStrList = (v) => Array.isArray(v) && v.every(isStr);

// One row per message: field names in wire order, with their checks.
const SCHEMA = {
  [MessageType.Hello]: [
    ["client", isStr],
    ["app", isStr],
    ["session", isStr],
    ["mode", isStr],
  ],
  [MessageType.Welcome]: [
    ["session", isStr],
    ["user", isStr],
    ["role", isStr],
    ["app", isStr],
    ["width", isUint],
    ["height", isUint],
    ["tileSize", isUint],
    ["dictionarySlots", isUint],
    ["apps", isStrList],
  ],
  [MessageType.Input]: [
    ["seq", isUint],
    ["kind", isStr],
    ["key", isStr],
    ["x", isInt],
    ["y", isInt],
    ["buttons", isUint],
  ],
  [MessageType.Frame]: [
    ["seq", isUint],
    ["inputSeq", isUint],
    ["keyframe", isBool],
    ["width", isUint],
    ["height", isUint],
    ["tiles", isTiles],
    ["checksum", isUint],
  ],
  [MessageType.PackedFrame]: [
    ["seq", isUint],
    ["inputSeq", isUint],
    ["keyframe", isBool],
    ["width", isUint],
    ["height", isUint],
    ["count", isUint],
    ["size", isUint],
    ["data", isBytes],
    ["checksum", isUint],
  ],
  [MessageType.Ack]: [["seq", isUint]],
  [MessageType.Error]: [
    ["code", isInt],
    ["message", isStr],
  ],
  [MessageType.Bye]: [["reason", isStr]],
  [MessageType.Resync]: [["reason", isStr]],
};

export const MESSAGE_NAMES = Object.freeze(
  Object.fromEntries(Object.entries(MessageType).map(([name, id]) => [id, name])),
);

/** Serialize `{type, ...fields}` to wire bytes; checks every field first. */
export function encodeMessage(msg) {
  const schema = SCHEMA[msg.type];
  if (!schema) throw new ProtocolError(`unknown message type ${msg.type}`);
  const items = [PROTOCOL_VERSION, msg.type];
  for (const [name, check] of schema) {
    const v = msg[name];
    if (!check(v)) throw new ProtocolError(`${MESSAGE_NAMES[msg.type]}.${name} is invalid`);
    items.push(v);
  }
  return encode(items);
}

/** Parse wire bytes into `{type, ...fields}`; any deviation is a ProtocolError. */
export function decodeMessage(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (data.length > MAX_MESSAGE_BYTES) {
    throw new ProtocolError(
      `message of ${data.length} bytes exceeds ${MAX_MESSAGE_BYTES}`,
      ErrorCode.PAYLOAD_TOO_BIG,
    );
  }
  let items;
  try {
    items = decode(data, MAX_MESSAGE_BYTES);
  } catch (err) {
    if (err instanceof PayloadTooBig) throw new ProtocolError(err.message, ErrorCode.PAYLOAD_TOO_BIG);
    if (err instanceof MsgpackError) throw new ProtocolError(err.message);
    throw err;
  }
  if (!Array.isArray(items) || items.length < 2) {
    throw new ProtocolError("a message is an array [version, type, ...]");
  }
  const [version, type] = items;
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`unsupported version ${version}`, ErrorCode.UNSUPPORTED_VERSION);
  }
  const schema = SCHEMA[type];
  if (!schema) throw new ProtocolError(`unknown message type ${type}`);
  if (items.length !== schema.length + 2) {
    throw new ProtocolError(`${MESSAGE_NAMES[type]} needs ${schema.length} fields`);
  }
  const msg = { type };
  schema.forEach(([name, check], i) => {
    const v = items[i + 2];
    if (!check(v)) throw new ProtocolError(`${MESSAGE_NAMES[type]}.${name} is invalid`);
    msg[name] = v;
  });
  return msg;
}

export const State = Object.freeze({
  IDLE: "IDLE",
  HELLO_SENT: "HELLO_SENT",
  STREAMING: "STREAMING",
  CLOSED: "CLOSED",
});

// Which messages each side may send or receive in each state.
const CLIENT_SENDS = {
  [State.IDLE]: { [MessageType.Hello]: State.HELLO_SENT },
  [State.HELLO_SENT]: { [MessageType.Bye]: State.CLOSED, [MessageType.Error]: State.CLOSED },
  [State.STREAMING]: {
    [MessageType.Input]: State.STREAMING,
    [MessageType.Ack]: State.STREAMING,
    [MessageType.Resync]: State.STREAMING,
    [MessageType.Bye]: State.CLOSED,
    [MessageType.Error]: State.CLOSED,
  },
  [State.CLOSED]: {},
};

const CLIENT_RECEIVES = {
  [State.IDLE]: {},
  [State.HELLO_SENT]: {
    [MessageType.Welcome]: State.STREAMING,
    [MessageType.Bye]: State.CLOSED,
    [MessageType.Error]: State.CLOSED,
  },
  [State.STREAMING]: {
    [MessageType.Frame]: State.STREAMING,
    [MessageType.PackedFrame]: State.STREAMING,
    [MessageType.Bye]: State.CLOSED,
    [MessageType.Error]: State.CLOSED,
  },
  [State.CLOSED]: {},
};

/**
 * Sans-I/O client connection: `receiveData(bytes)` returns the message,
 * `send(msg)` returns the bytes to write. Both check the state table.
 */
export class ClientConnection {
  constructor() {
    this.state = State.IDLE;
  }

  send(msg) {
    const next = CLIENT_SENDS[this.state][msg.type];
    if (next === undefined) {
      throw new ProtocolError(
        `cannot send ${MESSAGE_NAMES[msg.type]} in ${this.state}`,
        ErrorCode.OUT_OF_STATE,
      );
    }
    const bytes = encodeMessage(msg);
    this.state = next;
    return bytes;
  }

  receiveData(bytes) {
    const msg = decodeMessage(bytes);
    let next = CLIENT_RECEIVES[this.state][msg.type];
    if (next === undefined) {
      throw new ProtocolError(
        `unexpected ${MESSAGE_NAMES[msg.type]} in ${this.state}`,
        ErrorCode.OUT_OF_STATE,
      );
    }
    // A 403 while streaming refuses one request (a view-role Input); the stream goes on.
    if (this.state === State.STREAMING && msg.type === MessageType.Error && msg.code === ErrorCode.FORBIDDEN) {
      next = State.STREAMING;
    }
    this.state = next;
    return msg;
  }

  /** Bytes of the Error message to send before closing, for a failure `err`. */
  fail(err) {
    const code = err instanceof ProtocolError ? err.code : ErrorCode.SERVER_ERROR;
    if (this.state === State.CLOSED || this.state === State.IDLE) {
      this.state = State.CLOSED;
      return null;
    }
    const bytes = encodeMessage({ type: MessageType.Error, code, message: String(err.message) });
    this.state = State.CLOSED;
    return bytes;
  }
}

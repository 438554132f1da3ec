// Display codec, client side: the browser twin of simulacra.codecs.display.FrameDecoder.
//
//   Frame.tiles ──► for each [index, encoding, data], in frame order:
//       SOLID / RAW / ZLIB / PALETTE_RLE ─► 768 RGB bytes ─► insert into tile dictionary
//       REF slot ───────────────────────► 768 RGB bytes from the dictionary (marks it used)
//   (every tile is checked and decoded first; a bad frame changes nothing)
//   ──► write into the framebuffer (RGB, row-major) ──► crc32(framebuffer) == Frame.checksum
//                                                    └──► tile table == PackedFrame.checksum
//
// Tile table (packed mode's checksum, tiles.TileTable on the server): the CRC-32
// of each tile's 768 RAW bytes, 4 bytes big-endian each, in tile index order;
// the checksum is the CRC-32 of that table. Only tiles written since the last
// check are hashed again, plus an audit window that walks the whole picture
// every AUDIT_FRAMES checks.
//
// Tile dictionary: `slots` entries; an insert takes the lowest free slot while
// any is free, else the least recently used one; every insert and every REF
// counts as a use. A keyframe empties it first. Both ends run the same steps in
// the same order, so slot numbers agree without being negotiated.

export const TILE = 16;
export const TILE_BYTES = TILE * TILE * 3;
// No encoder of ours emits more (PALETTE_RLE with 255 colours and 256 runs is 1,278).
export const MAX_TILE_DATA = 2048;
export const AUDIT_FRAMES = 32;

export const TileEncoding = Object.freeze({
  SOLID: 0,
  RAW: 1,
  ZLIB: 2,
  PALETTE_RLE: 3,
  REF: 4,
});

export class CodecError extends Error {
  constructor(message) {
    super(message);
    this.name = "CodecError";
  }
}

export class PayloadTooBig extends CodecError {
  constructor(message) {
    super(message);
    this.name = "PayloadTooBig";
  }
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as zlib.crc32 computes it; pass a previous result as `crc` to continue. */
export function crc32(bytes, crc = 0) {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// DecompressionStream("deflate") speaks RFC 1950 (zlib), which ZLIB tiles are.
// Reading stops as soon as the output passes one tile, so a zlib bomb costs
// at most one chunk of memory.
async function inflateTile(data) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  const reader = stream.getReader();
  const out = new Uint8Array(TILE_BYTES);
  let n = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (n + value.length > TILE_BYTES) throw new PayloadTooBig("ZLIB tile inflates past 768 bytes");
      out.set(value, n);
      n += value.length;
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    if (err instanceof CodecError) throw err;
    throw new CodecError(`ZLIB tile is not a valid zlib stream: ${err.message}`);
  }
  if (n !== TILE_BYTES) throw new CodecError(`ZLIB tile inflates to ${n} bytes, not 768`);
  return out;
}

function solidTile(data) {
  if (data.length !== 3) throw new CodecError("SOLID tile needs 3 bytes");
  const out = new Uint8Array(TILE_BYTES);
  for (let i = 0; i < TILE_BYTES; i += 3) {
    out[i] = data[0];
    out[i + 1] = data[1];
    out[i + 2] = data[2];
  }
  return out;
}

function rawTile(data) {
  if (data.length !== TILE_BYTES) throw new CodecError("RAW tile needs 768 bytes");
  return data.slice();
}

function paletteRleTile(data) {
  if (data.length < 1) throw new CodecError("PALETTE_RLE tile is empty");
  const n = data[0];
  if (n < 1) throw new CodecError("PALETTE_RLE palette size must be 1..255");
  let pos = 1 + 3 * n;
  if (data.length < pos) throw new CodecError("PALETTE_RLE palette is truncated");
  if ((data.length - pos) % 2 !== 0) throw new CodecError("PALETTE_RLE runs are truncated");
  const out = new Uint8Array(TILE_BYTES);
  let pixel = 0;
  while (pos < data.length) {
    const run = data[pos] + 1;
    const idx = data[pos + 1];
    pos += 2;
    if (idx >= n) throw new CodecError(`PALETTE_RLE index ${idx} outside palette of ${n}`);
    if (pixel + run > TILE * TILE) throw new CodecError("PALETTE_RLE runs cover more than 256 pixels");
    const p = 1 + 3 * idx;
    for (let k = 0; k < run; k++, pixel++) {
      out[pixel * 3] = data[p];
      out[pixel * 3 + 1] = data[p + 1];
      out[pixel * 3 + 2] = data[p + 2];
    }
  }
  if (pixel !== TILE * TILE) throw new CodecError(`PALETTE_RLE runs cover ${pixel} of 256 pixels`);
  return out;
}

/**
 * The tile dictionary. A Map keeps slots in use order (delete + set moves a
 * slot to the back), so the least recently used slot is always the first key.
 */
export class TileDictionary {
  constructor(slots) {
    this.slots = slots;
    this.reset();
  }

  reset() {
    this.tiles = new Array(this.slots);
    this.filled = 0;
    this.order = new Map();
  }

  insert(tile) {
    if (this.slots === 0) return -1;
    let slot;
    if (this.filled < this.slots) slot = this.filled++;
    else slot = this.order.keys().next().value;
    this.tiles[slot] = tile;
    this.order.delete(slot);
    this.order.set(slot, true);
    return slot;
  }

  get(slot) {
    if (slot >= this.filled) throw new CodecError(`REF to empty dictionary slot ${slot}`);
    this.order.delete(slot);
    this.order.set(slot, true);
    return this.tiles[slot];
  }
}

/** Client side frame decoder: keeps the framebuffer the server believes we hold. */
export class FrameDecoder {
  constructor(width, height, { dictionarySlots = 4096 } = {}) {
    if (width <= 0 || height <= 0 || width % TILE !== 0 || height % TILE !== 0) {
      throw new CodecError(`framebuffer ${width}x${height} is not a positive multiple of 16`);
    }
    if (!Number.isInteger(dictionarySlots) || dictionarySlots < 0 || dictionarySlots > 65536) {
      throw new CodecError(`dictionary_slots ${dictionarySlots} outside 0..65536`);
    }
    this.width = width;
    this.height = height;
    this.cols = width / TILE;
    this.tileCount = this.cols * (height / TILE);
    this.framebuffer = new Uint8Array(width * height * 3);
    this.dictionary = new TileDictionary(dictionarySlots);
    this.table = new Uint8Array(this.tileCount * 4);
    this.tableView = new DataView(this.table.buffer);
    const black = crc32(new Uint8Array(TILE_BYTES));
    for (let i = 0; i < this.tileCount; i++) this.tableView.setUint32(i * 4, black);
    this.written = new Set();
    this.auditAt = 0;
    this.auditStep = Math.max(1, Math.ceil(this.tileCount / AUDIT_FRAMES));
  }

  /**
   * Apply one frame's tiles, in order; returns the indexes written. The whole
   * frame is checked and decoded before anything changes, so a CodecError
   * leaves the picture and the dictionary as they were.
   */
  async apply(tiles, { keyframe }) {
    if (tiles.length > this.tileCount) {
      throw new CodecError(`${tiles.length} tiles for a ${this.tileCount}-tile framebuffer`);
    }
    const dict = this.dictionary;
    // Slots fill in order and only a keyframe empties them, so counting inserts
    // tells which REFs will find a tile.
    let filled = keyframe ? 0 : dict.filled;
    const decoded = tiles.map(([index, enc, data]) => {
      if (index >= this.tileCount) throw new CodecError(`tile index ${index} out of range`);
      if (data.length > MAX_TILE_DATA) {
        throw new PayloadTooBig(`tile data of ${data.length} bytes is past ${MAX_TILE_DATA}`);
      }
      switch (enc) {
        case TileEncoding.SOLID:
          filled = Math.min(filled + 1, dict.slots);
          return solidTile(data);
        case TileEncoding.RAW:
          filled = Math.min(filled + 1, dict.slots);
          return rawTile(data);
        case TileEncoding.ZLIB: {
          filled = Math.min(filled + 1, dict.slots);
          // Handled here too, so a later bad tile leaves no unhandled rejection behind.
          const inflating = inflateTile(data);
          inflating.catch(() => {});
          return inflating;
        }
        case TileEncoding.PALETTE_RLE:
          filled = Math.min(filled + 1, dict.slots);
          return paletteRleTile(data);
        case TileEncoding.REF: {
          if (dict.slots === 0) throw new CodecError("REF tile without a dictionary");
          if (data.length !== 2) throw new CodecError("REF tile needs 2 bytes");
          const slot = (data[0] << 8) | data[1];
          if (slot >= filled) throw new CodecError(`REF to empty dictionary slot ${slot}`);
          return null;
        }
        default:
          throw new CodecError(`unknown tile encoding ${enc}`);
      }
    });
    const pixels = await Promise.all(decoded);
    if (keyframe) dict.reset();
    tiles.forEach(([index, enc, data], i) => {
      let tile = pixels[i];
      if (enc === TileEncoding.REF) tile = dict.get((data[0] << 8) | data[1]);
      else dict.insert(tile);
      this.writeTile(index, tile);
    });
    return tiles.map(([index]) => index);
  }

  writeTile(index, pixels) {
    const row = Math.floor(index / this.cols);
    const col = index % this.cols;
    const stride = this.width * 3;
    let dst = row * TILE * stride + col * TILE * 3;
    for (let y = 0; y < TILE; y++, dst += stride) {
      this.framebuffer.set(pixels.subarray(y * TILE * 3, (y + 1) * TILE * 3), dst);
    }
    this.written.add(index);
  }

  /** CRC-32 of the whole picture (Frame.checksum). */
  checksum() {
    return crc32(this.framebuffer);
  }

  /** CRC-32 of one tile's RAW bytes, read back from the framebuffer. */
  tileCrc(index) {
    const row = Math.floor(index / this.cols);
    const col = index % this.cols;
    const stride = this.width * 3;
    let at = row * TILE * stride + col * TILE * 3;
    let crc = 0;
    for (let y = 0; y < TILE; y++, at += stride) {
      crc = crc32(this.framebuffer.subarray(at, at + TILE * 3), crc);
    }
    return crc;
  }

  /** The tile-table checksum (PackedFrame.checksum): the tiles written since the
   *  last call and one audit window are hashed again, the rest is remembered. */
  tableChecksum() {
    for (const index of this.written) this.tableView.setUint32(index * 4, this.tileCrc(index));
    this.written.clear();
    for (let k = 0; k < this.auditStep; k++) {
      const index = (this.auditAt + k) % this.tileCount;
      this.tableView.setUint32(index * 4, this.tileCrc(index));
    }
    this.auditAt = (this.auditAt + this.auditStep) % this.tileCount;
    return crc32(this.table);
  }

  /** Copy tiles (all when `indexes` is null) into an RGBA ImageData of the same size. */
  paint(imageData, indexes = null) {
    const fb = this.framebuffer;
    const px = imageData.data;
    const list = indexes ?? Array.from({ length: this.tileCount }, (_, i) => i);
    for (const index of list) {
      const x0 = (index % this.cols) * TILE;
      const y0 = Math.floor(index / this.cols) * TILE;
      for (let y = y0; y < y0 + TILE; y++) {
        let s = (y * this.width + x0) * 3;
        let d = (y * this.width + x0) * 4;
        for (let x = 0; x < TILE; x++, s += 3, d += 4) {
          px[d] = fb[s];
          px[d + 1] = fb[s + 1];
          px[d + 2] = fb[s + 2];
          px[d + 3] = 255;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- packed mode
//
//   PackedFrame.data ──► InflateStream (one DecompressionStream("deflate") per
//   stream; a keyframe starts a new one) ──► exactly `size` bytes ──► unpackTiles
//   ──► [[index, encoding, data]] ──► FrameDecoder.apply, as for a Frame
//
//   per tile: gap (varint) | encoding (1 byte) | payload
//             SOLID 3 bytes, RAW 768, ZLIB / PALETTE_RLE: length (varint) + data,
//             REF: zigzag varint of slot - (previous REF slot + 1)

export const MAX_PACKED_BYTES = 1 << 20;
const MAX_SLOT = 1 << 16;
const FIXED = { [TileEncoding.SOLID]: 3, [TileEncoding.RAW]: TILE_BYTES };

/** The `count` tiles of a packed list (every byte used), as a Frame would carry them. */
export function unpackTiles(raw, count, tileCount) {
  if (count > tileCount) throw new PayloadTooBig(`frame lists ${count} tiles; the framebuffer has ${tileCount}`);
  let at = 0;
  const varint = (limit) => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= raw.length) throw new CodecError("packed tiles end inside a number");
      const byte = raw[at++];
      value += (byte & 0x7f) * scale;
      if (value > limit) throw new CodecError(`packed number past ${limit}`);
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  const take = (n) => {
    if (at + n > raw.length) throw new CodecError("packed tiles end inside a tile");
    const out = raw.subarray(at, at + n);
    at += n;
    return out;
  };
  const tiles = [];
  let previous = -1;
  let previousSlot = -1;
  for (let i = 0; i < count; i++) {
    const index = previous + 1 + varint(tileCount);
    if (index >= tileCount) throw new CodecError(`tile index ${index} outside 0..${tileCount - 1}`);
    previous = index;
    const enc = take(1)[0];
    let data;
    if (enc === TileEncoding.REF) {
      const zigzag = varint(2 * MAX_SLOT);
      const slot = previousSlot + 1 + (zigzag % 2 === 0 ? zigzag / 2 : -(zigzag + 1) / 2);
      if (slot < 0 || slot >= MAX_SLOT) throw new CodecError(`REF slot ${slot} outside 0..${MAX_SLOT - 1}`);
      previousSlot = slot;
      data = new Uint8Array([slot >> 8, slot & 0xff]);
    } else if (enc in FIXED) {
      data = take(FIXED[enc]);
    } else if (enc === TileEncoding.ZLIB || enc === TileEncoding.PALETTE_RLE) {
      data = take(varint(MAX_TILE_DATA));
    } else {
      throw new CodecError(`unknown tile encoding ${enc}`);
    }
    tiles.push([index, enc, data]);
  }
  if (at !== raw.length) throw new CodecError(`${raw.length - at} bytes after the last packed tile`);
  return tiles;
}

const WRITTEN = Symbol("written");

/**
 * The client end of a connection's deflate stream: each chunk (a sync flush)
 * inflates to exactly the `size` its PackedFrame declares. After any error the
 * stream is lost until the next keyframe.
 */
export class InflateStream {
  constructor() {
    this.writer = null;
    this.reader = null;
    this.pendingRead = null;
  }

  close() {
    if (this.writer) this.writer.abort().catch(() => {});
    if (this.reader) this.reader.cancel().catch(() => {});
    this.writer = this.reader = this.pendingRead = null;
  }

  async inflate(data, size, { keyframe }) {
    if (!Number.isInteger(size) || size < 0 || size > MAX_PACKED_BYTES) {
      throw new PayloadTooBig(`packed tiles of ${size} bytes, limit ${MAX_PACKED_BYTES}`);
    }
    if (keyframe) {
      this.close();
      const stream = new DecompressionStream("deflate");
      this.writer = stream.writable.getWriter();
      this.reader = stream.readable.getReader();
    }
    if (size === 0) {
      if (data.length) throw new CodecError("a frame without tiles carries no stream data");
      return new Uint8Array(0);
    }
    if (!this.writer) throw new CodecError("packed data before the first keyframe");
    try {
      return await this.read(data, size);
    } catch (err) {
      this.close();
      if (err instanceof CodecError) throw err;
      throw new CodecError(`packed stream: ${err.message}`);
    }
  }

  async read(data, size) {
    // The chunk's output is queued once the write settles; a read still empty
    // then means the chunk was short (no hang waiting for bytes never coming).
    const written = this.writer.write(data).then(() => WRITTEN);
    written.catch(() => {});
    const out = new Uint8Array(size);
    let n = 0;
    let done = false;
    while (n < size) {
      this.pendingRead ??= this.reader.read();
      const got = await Promise.race([this.pendingRead, done ? WRITTEN : written]);
      if (got === WRITTEN) {
        if (done) throw new CodecError(`packed chunk inflates to ${n} bytes, declared ${size}`);
        done = true; // one more look: output may be queued right behind the write
        await Promise.resolve();
        continue;
      }
      this.pendingRead = null;
      if (got.done) throw new CodecError("packed stream ended");
      if (n + got.value.length > size) {
        throw new PayloadTooBig(`packed chunk inflates past its declared ${size} bytes`);
      }
      out.set(got.value, n);
      n += got.value.length;
    }
    await written;
    return out;
  }
}

"""Frame encoder (server, one per client) and frame decoder (client).

::

    server                                                    client
    fb ─► diff vs held copy ─► changed tiles, ascending       FrameDecoder.apply(tiles)
          for each tile: hash ─► in dictionary? ─► REF slot     1. check every tile, decode all
                                 └─ no: insert, cache.get ─►       non-REF data at once, simulate
                                        (encoding, data)           slot fill (REF to empty slot?)
          held copy := fb                                       2. slot bookkeeping in frame
    [(index, encoding, data), ...] ─────── Frame ─────────►        order: each tile's pixels come
                                                                   from a new tile or an old slot
                                                                3. one gather from the old slots,
                                                                   then the new slots' pixels, one
                                                                   scatter into the framebuffer

Both sides run the same slot operations in the same order (see
``dictionary.py``), so a REF names the slot the client holds. ``apply`` checks
the whole frame before touching any state: a malformed frame raises and
leaves the picture and the dictionary as they were.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from simulacra.errors import CodecError, PayloadTooBig

from .cache import TileEncodeCache
from .dictionary import DecoderDictionary, EncoderDictionary
from .encodings import TileEncoding, decode_tiles, encode_tile
from .packed import PackedTiles
from .reference import check_tiles
from .tiles import TILE_BYTES, TileGrid, TileTable, framebuffer_checksum, tile_hash

__all__ = ["FrameEncoder", "FrameDecoder", "Tile"]

Tile = tuple[int, int, bytes]
_REF = int(TileEncoding.REF)


class FrameEncoder:
    """Turns successive framebuffers into the tiles one client is missing.

    Memory is the client's framebuffer plus ``dictionary_slots`` content hashes
    (``nbytes``); tile pixels live only in the shared ``cache``.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        dictionary_slots: int = 4096,
        cache: TileEncodeCache | None = None,
    ) -> None:
        self.grid = TileGrid(width, height)
        self.dictionary = EncoderDictionary(dictionary_slots)
        self.cache = cache
        # Both sides start from black; the first frame is normally a keyframe anyway.
        self._held = np.zeros((height, width, 3), dtype=np.uint8)
        self._all = np.arange(self.grid.count)
        self.tiles_sent = 0
        self.refs_sent = 0

    @property
    def framebuffer(self) -> np.ndarray:
        """What the client holds once it has applied every frame encoded so far (read-only view)."""
        view = self._held.view()
        view.flags.writeable = False
        return view

    def checksum(self) -> int:
        return framebuffer_checksum(self._held)

    @property
    def nbytes(self) -> int:
        return self._held.nbytes + self._all.nbytes + self.dictionary.nbytes

    def copy(self) -> FrameEncoder:
        """An independent encoder in the same state (held picture, dictionary, shared cache).

        Both then produce the same tiles for the same framebuffers; a server forks a
        shared encoder this way when one of its viewers skips a frame.
        """
        twin = FrameEncoder.__new__(FrameEncoder)
        twin.grid = self.grid
        twin.dictionary = self.dictionary.copy()
        twin.cache = self.cache
        twin._held = self._held.copy()
        twin._all = self._all  # never written
        twin.tiles_sent = self.tiles_sent
        twin.refs_sent = self.refs_sent
        return twin

    def encode(self, fb: np.ndarray, *, keyframe: bool = False) -> list[Tile]:
        """Tiles that differ from what the client holds (every tile on a keyframe)."""
        grid = self.grid
        fb = grid.check(fb)
        if keyframe:
            self.dictionary.reset()
            indices = self._all
        else:
            indices = grid.changed(fb, self._held)
            if not len(indices):
                return []
        tiles = grid.gather(fb, indices)
        if keyframe:
            np.copyto(self._held, fb)
        else:
            grid.scatter(self._held, indices, tiles)
        return self._encode_tiles(indices.tolist(), tiles.tobytes())

    def _encode_tiles(self, indices: list[int], blob: bytes) -> list[Tile]:
        dictionary = self.dictionary if self.dictionary.slots else None
        cache = self.cache
        out: list[Tile] = []
        refs = 0
        for i, index in enumerate(indices):
            tile = blob[i * TILE_BYTES : (i + 1) * TILE_BYTES]
            if dictionary is None and cache is None:
                out.append((index, *encode_tile(tile)))
                continue
            key = tile_hash(tile)
            if dictionary is not None:
                slot = dictionary.lookup(key)
                if slot is not None:
                    out.append((index, _REF, slot.to_bytes(2, "big")))
                    refs += 1
                    continue
                dictionary.insert(key)
            enc, data = cache.get(key, tile) if cache is not None else encode_tile(tile)
            out.append((index, enc, data))
        self.tiles_sent += len(out)
        self.refs_sent += refs
        return out


class FrameDecoder:
    """Rebuilds the server's framebuffer from Frame tiles, validating every byte.

    ``apply`` moves pixels in bulk: one gather from the dictionary, one scatter
    into the framebuffer per frame. Only the slot bookkeeping (the use order)
    walks the tiles one by one, so the result matches
    ``reference.ReferenceFrameDecoder`` exactly.
    """

    def __init__(self, width: int, height: int, *, dictionary_slots: int = 4096) -> None:
        self.grid = TileGrid(width, height)
        self.dictionary = DecoderDictionary(dictionary_slots)
        self.framebuffer = np.zeros((height, width, 3), dtype=np.uint8)
        self.tiles = TileTable(self.grid)
        self._written = np.zeros(self.grid.count, dtype=bool)  # since the last table_checksum

    def checksum(self) -> int:
        """CRC-32 of the whole picture (Frame.checksum)."""
        return framebuffer_checksum(self.framebuffer)

    def table_checksum(self) -> int:
        """The tile-table checksum (PackedFrame.checksum): costs the tiles written since
        the last call plus one audit window, not the whole picture."""
        written = np.flatnonzero(self._written)
        self._written[written] = False
        self.tiles.update(self.framebuffer, written)
        self.tiles.audit(self.framebuffer)
        return self.tiles.checksum()

    @property
    def nbytes(self) -> int:
        return (
            self.framebuffer.nbytes
            + self.dictionary.pixels.nbytes
            + self.tiles.nbytes
            + self._written.nbytes
        )

    def apply(self, tiles: list[Tile] | tuple[Tile, ...], *, keyframe: bool) -> np.ndarray:
        """Apply one Frame's tiles; returns ``self.framebuffer`` (updated in place)."""
        try:
            if type(tiles) is PackedTiles:
                # unpack_tiles checked indices (strictly ascending) and slot range already.
                indices, slots, payloads = tiles.indices, tiles.slots, tiles.payloads
                count = self.grid.count
                if len(indices) > count or (indices and indices[-1] >= count):
                    raise CodecError("tile outside the framebuffer")
                if keyframe and len(indices) != count:
                    raise CodecError("a keyframe must list every tile")
                unique = True
            else:
                indices, slots, payloads, unique = self._split(tiles, keyframe)
            new = decode_tiles(payloads)
            self._check_refs(slots, keyframe)
        except (CodecError, PayloadTooBig):
            # Checks here run in bulk, not tile by tile: name the error the reference
            # decoder names (the first bad tile in frame order).
            check_tiles(self.grid, self.dictionary, tiles, keyframe)
            raise
        # Nothing raises past this point: a bad frame leaves every state as it was.
        self._apply(indices, slots, new, keyframe, unique)
        return self.framebuffer

    def _split(
        self, tiles: list[Tile] | tuple[Tile, ...], keyframe: bool
    ) -> tuple[list[int], list[int], list[tuple[int, bytes]], bool]:
        """Plain tiles checked and split like ``PackedTiles``; True when indices are distinct."""
        count = self.grid.count
        if len(tiles) > count:
            raise PayloadTooBig(f"frame lists {len(tiles)} tiles; the framebuffer has {count}")
        indices: list[int] = []
        slots: list[int] = []
        payloads: list[tuple[int, bytes]] = []
        ascending = True
        previous = -1
        for item in tiles:
            try:
                index, encoding, data = item
            except (TypeError, ValueError):
                raise CodecError("a tile is (index, encoding, data)") from None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
                raise CodecError(f"tile index {index!r} outside 0..{count - 1}")
            if index <= previous:
                ascending = False
            previous = index
            if encoding == _REF and isinstance(encoding, int):
                if not isinstance(data, bytes | bytearray) or len(data) != 2:
                    raise CodecError("REF: 2 bytes expected")
                slots.append(int.from_bytes(data, "big"))
            else:
                slots.append(-1)
                payloads.append((encoding, data))
            indices.append(int(index))
        unique = ascending or len(set(indices)) == len(indices)
        if keyframe and (len(indices) if unique else len(set(indices))) != count:
            raise CodecError("a keyframe must list every tile")
        return indices, slots, payloads, unique

    def _check_refs(self, slots: list[int], keyframe: bool) -> None:
        """CodecError for a REF to a slot that is empty when the REF comes."""
        capacity = self.dictionary.slots
        filled = 0 if keyframe else self.dictionary.lru.filled
        # Slots fill lowest-first (see dictionary.py): before tile i, the filled
        # slots are 0 .. min(capacity, filled + non-REF tiles before i) - 1.
        if filled >= capacity:
            # Full already: inserts cannot grow it, one max() checks every REF.
            if slots and max(slots) >= filled:
                bad = next(s for s in slots if s >= filled)
                raise CodecError(f"REF to empty dictionary slot {bad}")
            return
        for slot in slots:
            if slot < 0:
                if filled < capacity:
                    filled += 1
            elif slot >= filled:
                raise CodecError(f"REF to empty dictionary slot {slot}")

    def _apply(
        self,
        indices: list[int],
        slots: list[int],
        new: np.ndarray,
        keyframe: bool,
        unique: bool,
    ) -> None:
        dictionary = self.dictionary
        if keyframe:
            dictionary.reset()
        n = len(indices)
        if not n:
            return
        pixels = dictionary.pixels
        if dictionary.slots == 0:  # no dictionary: no REFs (checked), nothing to keep
            out = new
        else:
            # Where each tile's pixels come from, in frame order: a REF to a slot
            # written earlier in this frame reads that tile (fresh), any other REF
            # reads the slot as it was before the frame (old). Slot writes wait
            # until every old slot is read, so an eviction cannot clobber a REF.
            lru = dictionary.lru
            order = lru._order
            touch = order.move_to_end
            capacity = lru.slots
            filled = lru.filled
            fresh: dict[int, int] = {}  # slot -> row of ``new`` it holds now
            old_at: list[int] = []
            old_slots: list[int] = []
            fresh_at: list[int] = []
            fresh_rows: list[int] = []
            inserts = [at for at, slot in enumerate(slots) if slot < 0]
            start = 0
            # REFs between two inserts touch their slots in one C-level pass; only
            # the inserts (evictions depend on the order so far) go one by one.
            for row, end in enumerate([*inserts, n]):
                if end > start:
                    refs = slots[start:end]
                    deque(map(touch, refs), maxlen=0)
                    if fresh and not fresh.keys().isdisjoint(refs):
                        for at in range(start, end):
                            got = fresh.get(slots[at])
                            if got is None:
                                old_at.append(at)
                                old_slots.append(slots[at])
                            else:
                                fresh_at.append(at)
                                fresh_rows.append(got)
                    else:
                        old_at += range(start, end)
                        old_slots += refs
                if end == n:
                    break
                if filled < capacity:
                    slot = filled
                    filled += 1
                else:
                    slot, _ = order.popitem(last=False)
                order[slot] = None
                fresh[slot] = row
                start = end + 1
            lru.filled = filled
            if len(old_at) == n:
                out = pixels[old_slots]
            else:
                out = np.empty((n, TILE_BYTES), dtype=np.uint8)
                if old_at:
                    out[old_at] = pixels[old_slots]
                if fresh_at:
                    out[fresh_at] = new[fresh_rows]
                if row:
                    out[inserts] = new
                    pixels[list(fresh)] = new[list(fresh.values())]
        at_index = np.asarray(indices, dtype=np.intp)
        if not unique:
            # A repeated index: the last tile there wins, as applying them in order would.
            _, last = np.unique(at_index[::-1], return_index=True)
            keep = n - 1 - last
            at_index, out = at_index[keep], out[keep]
        self.grid.scatter(self.framebuffer, at_index, out)
        self._written[at_index] = True

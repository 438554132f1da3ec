"""Frame encoder (server, one per client) and frame decoder (client).

::

    server                                                    client
    fb ─► diff vs held copy ─► changed tiles, ascending       FrameDecoder.apply(tiles)
          for each tile: hash ─► in dictionary? ─► REF slot     1. validate every tile, decode
                                 └─ no: insert, cache.get ─►       non-REF data, simulate slot
                                        (encoding, data)           fill (REF to empty slot?)
          held copy := fb                                       2. apply in order: REF reads
    [(index, encoding, data), ...] ─────── Frame ─────────►        slot, others insert; write
                                                                   pixels into framebuffer

Both sides run the same slot operations in the same order (see
``dictionary.py``), so a REF names the slot the client holds. ``apply`` checks
the whole frame before touching any state: a malformed frame raises and
leaves the picture and the dictionary as they were.
"""

from __future__ import annotations

import numpy as np

from simulacra.errors import CodecError, PayloadTooBig

from .cache import TileEncodeCache
from .dictionary import DecoderDictionary, EncoderDictionary
from .encodings import TileEncoding, decode_tile, encode_tile
from .tiles import TILE_BYTES, TileGrid, framebuffer_checksum, tile_hash

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
    """Rebuilds the server's framebuffer from Frame tiles, validating every byte."""

    def __init__(self, width: int, height: int, *, dictionary_slots: int = 4096) -> None:
        self.grid = TileGrid(width, height)
        self.dictionary = DecoderDictionary(dictionary_slots)
        self.framebuffer = np.zeros((height, width, 3), dtype=np.uint8)

    def checksum(self) -> int:
        return framebuffer_checksum(self.framebuffer)

    @property
    def nbytes(self) -> int:
        return self.framebuffer.nbytes + self.dictionary.pixels.nbytes

    def apply(self, tiles: list[Tile] | tuple[Tile, ...], *, keyframe: bool) -> np.ndarray:
        """Apply one Frame's tiles; returns ``self.framebuffer`` (updated in place)."""
        plan = self._check(tiles, keyframe)
        dictionary = self.dictionary
        if keyframe:
            dictionary.reset()
        use_slots = dictionary.slots > 0
        put = self.grid.put
        fb = self.framebuffer
        for index, pixels, slot in plan:
            if pixels is None:
                pixels = dictionary.ref(slot)
            elif use_slots:
                dictionary.insert(pixels)
            put(fb, index, pixels)
        return fb

    def _check(
        self, tiles: list[Tile] | tuple[Tile, ...], keyframe: bool
    ) -> list[tuple[int, np.ndarray | None, int]]:
        count = self.grid.count
        if len(tiles) > count:
            raise PayloadTooBig(f"frame lists {len(tiles)} tiles; the framebuffer has {count}")
        slots = self.dictionary.slots
        # Filled slots are always 0..filled-1 (see dictionary.py), so tracking the count
        # is enough to tell, before applying anything, whether a REF points at a tile.
        filled = 0 if keyframe else self.dictionary.lru.filled
        plan: list[tuple[int, np.ndarray | None, int]] = []
        for item in tiles:
            try:
                index, encoding, data = item
            except (TypeError, ValueError):
                raise CodecError("a tile is (index, encoding, data)") from None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
                raise CodecError(f"tile index {index!r} outside 0..{count - 1}")
            if encoding == _REF and isinstance(encoding, int):
                if not isinstance(data, bytes | bytearray) or len(data) != 2:
                    raise CodecError("REF: 2 bytes expected")
                slot = int.from_bytes(data, "big")
                if slot >= filled:
                    raise CodecError(f"REF to empty dictionary slot {slot}")
                plan.append((index, None, slot))
            else:
                plan.append((index, decode_tile(encoding, data), -1))
                if filled < slots:
                    filled += 1
        if keyframe and len({index for index, _, _ in plan}) != count:
            raise CodecError("a keyframe must list every tile")
        return plan

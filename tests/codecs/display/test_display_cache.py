import threading

import numpy as np
import pytest

from simulacra.codecs.display import FrameEncoder, TileEncodeCache, tile_hash
from simulacra.codecs.display import cache as cache_module
from simulacra.errors import CodecError


def _solid(value: int) -> bytes:
    return bytes((value, 0, 0)) * 256


def test_get_encodes_on_miss_and_counts():
    cache = TileEncodeCache(max_entries=4)
    tile = _solid(5)
    assert cache.get(tile_hash(tile), tile) == (0, b"\x05\x00\x00")
    assert cache.get(tile_hash(tile), tile) == (0, b"\x05\x00\x00")
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)


def test_bounded_lru_evicts_least_recently_used():
    cache = TileEncodeCache(max_entries=2)
    a, b, c = _solid(1), _solid(2), _solid(3)
    cache.get(tile_hash(a), a)
    cache.get(tile_hash(b), b)
    cache.get(tile_hash(a), a)  # a is now more recent than b
    cache.get(tile_hash(c), c)  # evicts b
    assert len(cache) == 2
    hits = cache.hits
    cache.get(tile_hash(a), a)
    cache.get(tile_hash(c), c)
    assert cache.hits == hits + 2
    misses = cache.misses
    cache.get(tile_hash(b), b)
    assert cache.misses == misses + 1
    assert cache.nbytes > 0


def test_rejects_bad_size():
    with pytest.raises(CodecError):
        TileEncodeCache(max_entries=0)


def _picture(width: int, height: int) -> np.ndarray:
    """Tiles from 5 distinct contents, several repeated."""
    rng = np.random.default_rng(3)
    contents = [rng.integers(0, 4, (16, 16, 3), dtype=np.uint8) * 70 for _ in range(5)]
    fb = np.zeros((height, width, 3), np.uint8)
    for index in range((width // 16) * (height // 16)):
        r, c = divmod(index, width // 16)
        fb[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] = contents[index % 5]
    return fb


def test_each_unique_tile_is_encoded_once_across_encoders(monkeypatch):
    calls = []
    real = cache_module.encode_tile

    def counting(tile: bytes) -> tuple[int, bytes]:
        calls.append(tile)
        return real(tile)

    monkeypatch.setattr(cache_module, "encode_tile", counting)
    cache = TileEncodeCache()
    fb = _picture(128, 64)  # 32 tiles, 5 contents
    first = FrameEncoder(128, 64, cache=cache).encode(fb, keyframe=True)
    second = FrameEncoder(128, 64, cache=cache).encode(fb, keyframe=True)
    assert first == second
    # With a dictionary, repeats inside a frame are REFs and never reach the cache.
    assert (cache.misses, cache.hits) == (5, 5)
    assert len(calls) == 5 and len(set(calls)) == 5
    # Without one, repeats are cache hits.
    FrameEncoder(128, 64, dictionary_slots=0, cache=cache).encode(fb, keyframe=True)
    assert (cache.misses, cache.hits, len(calls)) == (5, 5 + 32, 5)


def test_shared_between_threads():
    cache = TileEncodeCache(max_entries=8)
    tiles = [_solid(i) for i in range(32)]
    errors = []

    def work(offset: int) -> None:
        try:
            for k in range(400):
                tile = tiles[(k + offset) % 32]
                assert cache.get(tile_hash(tile), tile) == (0, tile[:3])
        except Exception as exc:  # reported below, with the assertion that failed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 5,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 8
    assert cache.hits + cache.misses == 1600

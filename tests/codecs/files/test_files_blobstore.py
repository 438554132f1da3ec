import hashlib
import io
import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulacra.codecs.files.blobstore import STALE_AFTER_S, BlobStore
from simulacra.codecs.files.blocks import BlockCodec
from simulacra.codecs.files.dictionary import DictionaryStore, train_viewer_dictionary
from simulacra.errors import CodecError, CorruptArtifact, NotFound

# A file of mixed content, several blocks long at a 1 KiB block size.
DATA = (b"line of text number %d\n" * 300) % tuple(range(300)) + os.urandom(3000)
SHA = hashlib.sha256(DATA).hexdigest()


def _store(tmp_path, block_size=1024):
    dicts = DictionaryStore(tmp_path / "dictionaries")
    return BlobStore(tmp_path / "blobs", dicts, block_size=block_size, try_emulator=False)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    blobs = _store(root)
    blobs.put(io.BytesIO(DATA), SHA, len(DATA))
    return blobs


def test_put_lays_out_blocks_and_map(stored):
    info = stored.info(SHA)
    assert info.size == len(DATA)
    assert len(info.blocks) == -(-len(DATA) // 1024)
    assert sum(b.raw_len for b in info.blocks) == len(DATA)
    path = stored.path(SHA)
    assert path == stored.root / SHA[:2] / SHA
    assert sorted(p.name for p in path.iterdir())[:2] == ["00000000.blk", "00000001.blk"]
    assert json.loads((path / "map.json").read_text())["sha256"] == SHA
    assert {b.codec for b in info.blocks} <= {BlockCodec.ZSTD, BlockCodec.RAW}
    assert stored.read_all(SHA) == DATA


@settings(max_examples=80, deadline=None)
@given(st.integers(0, len(DATA)), st.integers(0, len(DATA)))
def test_any_range_regenerates_exactly(stored, a, b):
    start, end = min(a, b), max(a, b)
    assert stored.read(SHA, start, end) == DATA[start:end]


def test_a_range_decodes_only_the_blocks_it_touches(stored, monkeypatch):
    touched = []
    real = stored._block
    monkeypatch.setattr(
        stored, "_block", lambda sha, info, i: touched.append(i) or real(sha, info, i)
    )
    assert stored.read(SHA, 5000, 5100) == DATA[5000:5100]
    assert touched == [4]


def test_range_outside_the_file_is_refused(stored):
    with pytest.raises(NotFound):
        stored.read(SHA, 10, len(DATA) + 1)
    with pytest.raises(NotFound):
        stored.info("ab" * 32)
    with pytest.raises(NotFound):
        stored.path("../../etc")


def test_same_content_is_stored_once(tmp_path):
    blobs = _store(tmp_path)
    first = blobs.put(io.BytesIO(DATA), SHA, len(DATA))
    again = blobs.put(io.BytesIO(DATA), SHA, len(DATA))
    assert first == again
    assert len(list((tmp_path / "blobs").glob("*/*"))) == 1


def test_wrong_sha_leaves_nothing(tmp_path):
    blobs = _store(tmp_path)
    with pytest.raises(CorruptArtifact):
        blobs.put(io.BytesIO(DATA), "0" * 64, len(DATA))
    with pytest.raises(CodecError, match="ended"):
        blobs.put(io.BytesIO(DATA[:100]), SHA, len(DATA))
    assert list((tmp_path / "blobs").iterdir()) == []


def test_old_blocks_decode_after_a_new_dictionary(tmp_path):
    blobs = _store(tmp_path)
    samples = [(b"def fn_%d(arg):\n    return arg + %d\n" % (i, i)) * 40 for i in range(64)]
    v1 = train_viewer_dictionary(samples, size=2048)
    assert v1 is not None
    blobs.dictionaries.add(v1)
    text = b"".join(samples[:8])
    sha1 = hashlib.sha256(text).hexdigest()
    info1 = blobs.put(io.BytesIO(text), sha1, len(text))
    assert info1.dictionary == v1.hex
    assert BlockCodec.ZSTD_DICT in {b.codec for b in info1.blocks}
    v2 = train_viewer_dictionary([s.replace(b"arg", b"val") for s in samples], size=2048)
    assert v2 is not None and v2.sha256 != v1.sha256
    blobs.dictionaries.add(v2)
    other = text.replace(b"arg", b"val")
    sha2 = hashlib.sha256(other).hexdigest()
    assert blobs.put(io.BytesIO(other), sha2, len(other)).dictionary == v2.hex
    reopened = _store(tmp_path)  # a restart: dictionaries come back from disk
    assert reopened.read_all(sha1) == text
    assert reopened.read_all(sha2) == other


def test_corrupt_block_is_caught_on_every_read(tmp_path):
    blobs = _store(tmp_path)
    blobs.put(io.BytesIO(DATA), SHA, len(DATA))
    block = blobs.path(SHA) / "00000002.blk"
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0x01
    block.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact):
        blobs.read_all(SHA)
    with pytest.raises(CorruptArtifact):
        blobs.read(SHA, 2048, 2049)
    assert blobs.read(SHA, 0, 2048) == DATA[:2048]  # untouched blocks still regenerate
    block.unlink()
    with pytest.raises(CorruptArtifact, match="missing"):
        blobs.read(SHA, 2048, 2049)


def test_stale_temp_dirs_are_removed_at_start_but_fresh_ones_kept(tmp_path):
    old = tmp_path / "blobs" / ".tmp-deadbeef"
    old.mkdir(parents=True)
    (old / "00000000.blk").write_bytes(b"half a blob")
    long_ago = time.time() - STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    # Another node sharing the data directory may be writing this one right now.
    (tmp_path / "blobs" / ".tmp-cafef00d").mkdir()
    _store(tmp_path)
    assert [p.name for p in (tmp_path / "blobs").iterdir()] == [".tmp-cafef00d"]


def test_a_map_that_cuts_blocks_unevenly_is_corrupt_not_misread(tmp_path):
    # Sizes that still add up, but would shift every range read after block 0.
    blobs = _store(tmp_path)
    blobs.put(io.BytesIO(DATA), SHA, len(DATA))
    map_path = blobs.path(SHA) / "map.json"
    obj = json.loads(map_path.read_text())
    obj["blocks"][0][1] -= 1
    obj["blocks"][1][1] += 1
    map_path.write_text(json.dumps(obj))
    with pytest.raises(CorruptArtifact, match="does not add up"):
        blobs.read(SHA, 1024, 1100)

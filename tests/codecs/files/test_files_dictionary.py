import hashlib

import pytest

from simulacra.codecs.files.dictionary import (
    MIN_SAMPLES,
    DictionaryStore,
    ViewerDictionary,
    train_viewer_dictionary,
)
from simulacra.errors import CorruptArtifact


def _samples(n: int, salt: str = "") -> list[bytes]:
    return [
        (
            f"# module {i}{salt}\nimport os\n\ndef handler_{i}(request):\n"
            f"    return request.get('value_{i % 7}', {i})\n" * 30
        ).encode()
        for i in range(n)
    ]


def test_too_few_samples_train_nothing():
    assert train_viewer_dictionary(_samples(MIN_SAMPLES - 1)) is None
    assert train_viewer_dictionary([b""] * 100) is None


def test_trained_dictionary_is_named_by_its_sha256():
    trained = train_viewer_dictionary(_samples(64), size=4096)
    assert trained is not None
    assert trained.sha256 == hashlib.sha256(trained.data).digest()
    assert trained.hex == trained.sha256.hex()
    assert trained.zstd().as_bytes() == trained.data


def test_store_keeps_every_version_and_tracks_current(tmp_path):
    store = DictionaryStore(tmp_path)
    assert store.current() is None
    first = train_viewer_dictionary(_samples(64), size=4096)
    second = train_viewer_dictionary(_samples(64, salt="b"), size=4096)
    assert first is not None and second is not None and first.sha256 != second.sha256
    store.add(first)
    store.add(second)
    assert store.current() == second
    assert store.versions() == sorted([first.hex, second.hex])
    assert store.get(first.sha256).as_bytes() == first.data
    reopened = DictionaryStore(tmp_path)
    assert reopened.current() == second


def test_missing_or_altered_dictionary_is_corrupt(tmp_path):
    store = DictionaryStore(tmp_path)
    fake = ViewerDictionary(hashlib.sha256(b"d").digest(), b"d")
    with pytest.raises(CorruptArtifact, match="missing"):
        store.get(fake.sha256)
    store.add(fake, make_current=False)
    assert store.current() is None
    (tmp_path / (fake.hex + ".zdict")).write_bytes(b"e")
    with pytest.raises(CorruptArtifact, match="sha256"):
        store.get(fake.sha256)


def test_blocks_find_a_dictionary_by_its_eight_byte_id(tmp_path):
    store = DictionaryStore(tmp_path)
    trained = train_viewer_dictionary(_samples(64), size=4096)
    assert trained is not None
    store.add(trained)
    assert store.get(trained.sha256[:8]).as_bytes() == trained.data
    with pytest.raises(CorruptArtifact, match="missing"):
        store.get(bytes(8))


def test_a_corrupt_current_dictionary_means_no_dictionary_not_failed_uploads(tmp_path, caplog):
    store = DictionaryStore(tmp_path)
    trained = train_viewer_dictionary(_samples(64), size=4096)
    assert trained is not None
    store.add(trained)
    (tmp_path / (trained.hex + ".zdict")).write_bytes(b"bit rot")
    assert store.current() is None
    assert "current viewer dictionary unusable" in caplog.text
    with pytest.raises(CorruptArtifact, match="sha256"):
        store.get(trained.sha256)  # blocks that name it still refuse to decode

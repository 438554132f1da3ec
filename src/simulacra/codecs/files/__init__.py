"""simulacra.codecs.files: file blocks, the viewer dictionary, regeneration of bytes.

::

    file ─► BlobStore.put ─► 64 KiB blocks ─► encode_block (raw | zstd | zstd + viewer
            dictionary | emulator) ─► blobs/<sha[:2]>/<sha>/*.blk + map.json
    range ─► BlobStore.read ─► only the blocks it touches ─► decode_block (sha256 each)

The metadata (files, entries, codes, inbox, audit) lives in
``simulacra.server.files``; ``simulacra files ...`` is ``codecs/files/cli.py``.
"""

from simulacra.codecs.files.blobstore import DEFAULT_BLOCK_SIZE, BlobInfo, BlobStore, BlockInfo
from simulacra.codecs.files.blocks import BlockCodec, EncodedBlock, decode_block, encode_block
from simulacra.codecs.files.dictionary import (
    DictionaryStore,
    ViewerDictionary,
    train_viewer_dictionary,
)

__all__ = [
    "BlobStore",
    "BlobInfo",
    "BlockInfo",
    "DEFAULT_BLOCK_SIZE",
    "BlockCodec",
    "EncodedBlock",
    "encode_block",
    "decode_block",
    "DictionaryStore",
    "ViewerDictionary",
    "train_viewer_dictionary",
]

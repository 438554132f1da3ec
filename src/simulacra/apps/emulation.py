"""Run an app's program segments through compiled emulators, cached in the data directory.

::

    app_cls.segments ─► key = sha256(codec version, bits, reference source, module source,
                       │                 reference outputs over the domain)
                       ▼
    data/emulators/<app>/<segment>-<key>.emu ──load──► Emulator (version 0)
                       │ missing or corrupt (warning) ─► compile_emulator ─► save
                       ▼
    <segment>-<key>.json (manifest): versions 1..N, each = previous + patches {x: y},
    stored as <segment>-<key>.v<N>.emu; the newest version is the one that answers
                       ▼
    EmulatedRunner[segment](codes) ─► emulator.query(codes)   (counts queries, fallbacks)

Patching never touches the reference code: ``simulacra apps patch`` writes a new
version file and then the manifest (atomically, by rename); a running server
sees the manifest change on its next ``runner.refresh()`` (one ``stat`` per
segment) and swaps in the new emulator between two steps. ``unpatch`` drops
the newest version, so the previous one answers again.

The key covers the reference's outputs too (for domains up to 2**22 inputs),
so a cached emulator always answers exactly what the reference would, even
when the code it depends on lives outside the hashed modules (Pillow's font
raster, numpy).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from simulacra.apps.base import App, Segment
from simulacra.errors import CodecError, ConfigError, CorruptArtifact, NotFound, PayloadTooBig
from simulacra.fsutil import atomic_path, write_atomic

__all__ = [
    "EMULATION_VERSION",
    "EmulatedRunner",
    "SegmentStore",
    "SegmentInfo",
    "PatchVersion",
    "load_or_compile_segments",
    "segment_key",
    "segment_summary",
]

log = logging.getLogger(__name__)

EMULATION_VERSION = 1  # bump when the cache layout or the key recipe changes
_DIGEST_MAX_IN_BITS = 22  # hash the reference's outputs up to this many input bits
_MANIFEST_MAX_BYTES = 16 << 20
_MAX_PATCHES = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # fullmatch: "$" would let a trailing newline in


def _codec() -> ModuleType:
    try:
        return importlib.import_module("simulacra.codecs.emulator")
    except ImportError as exc:  # only while the codec is being built
        raise CodecError(f"emulator codec unavailable: {exc}") from None


def _codec_version(codec: Any) -> str:
    for name in ("CODEC_VERSION", "FORMAT_VERSION", "__version__"):
        value = getattr(codec, name, None)
        if value is not None:
            return f"{name}={value}"
    return "unversioned"


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        # A builtin or a lambda typed at a prompt: its repr is all we can hash.
        return repr(obj)


def segment_key(segment: Segment, codec: Any | None = None) -> str:
    """The cache key of ``segment``: changes when its code, outputs or the codec change."""
    codec = codec if codec is not None else _codec()
    fn = segment.reference
    h = hashlib.sha256()
    parts = [
        f"simulacra.apps.emulation/{EMULATION_VERSION}",
        _codec_version(codec),
        f"{segment.name}:{segment.in_bits}:{segment.out_bits}",
        _source_of(fn),
    ]
    module = inspect.getmodule(fn)
    if module is not None:
        parts.append(_source_of(module))
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "big") + data)
    if segment.in_bits <= _DIGEST_MAX_IN_BITS:
        outputs = np.asarray(fn(np.arange(1 << segment.in_bits, dtype=np.uint64)), dtype="<u8")
        h.update(hashlib.sha256(outputs.tobytes()).digest())
    return h.hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class PatchVersion:
    """Version ``version`` of a segment's emulator: the previous one plus ``patches``."""

    version: int
    file: str
    patches: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What ``simulacra apps`` shows for one segment."""

    app: str
    segment: str
    in_bits: int
    out_bits: int
    key: str
    compiled: bool
    version: int
    nbytes: int | None
    packed_bytes: int
    verified: bool | None
    review_regions: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "segment": self.segment,
            "in_bits": self.in_bits,
            "out_bits": self.out_bits,
            "key": self.key,
            "compiled": self.compiled,
            "version": self.version,
            "bytes": self.nbytes,
            "packed_bytes": self.packed_bytes,
            "verified": self.verified,
            "review_regions": list(self.review_regions),
        }


def _save_atomic(emu: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        emu.save(tmp)


class _Progress:
    """``progress(stage, done, total)`` for the codec -> one tqdm bar per stage."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            from tqdm import tqdm

            self.stage = stage
            # disable=None: a bar only on a terminal; logs stay clean.
            self.bar = tqdm(
                total=total or None, desc=f"{self.label} {stage}", leave=False, disable=None
            )
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SegmentStore:
    """The cached emulators of one app's segments in ``data_dir/emulators/<app>/``."""

    def __init__(self, app_cls: type[App], data_dir: Path, *, codec: Any | None = None) -> None:
        if not _NAME.fullmatch(app_cls.name):
            raise ConfigError(f"app name {app_cls.name!r} cannot name a directory")
        self.app_cls = app_cls
        self.codec = codec if codec is not None else _codec()
        self.root = Path(data_dir) / "emulators" / app_cls.name
        self.segments: dict[str, Segment] = {s.name: s for s in app_cls.segments}
        self._keys: dict[str, str] = {}

    def segment(self, name: str) -> Segment:
        try:
            return self.segments[name]
        except KeyError:
            known = ", ".join(self.segments)
            raise NotFound(
                f"app {self.app_cls.name!r} has no segment {name!r}; segments: {known}"
            ) from None

    def key(self, name: str) -> str:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = segment_key(self.segment(name), self.codec)
        return key

    def base_path(self, name: str) -> Path:
        return self.root / f"{name}-{self.key(name)}.emu"

    def manifest_path(self, name: str) -> Path:
        return self.root / f"{name}-{self.key(name)}.json"

    def version_path(self, name: str, version: int) -> Path:
        if version == 0:
            return self.base_path(name)
        return self.root / f"{name}-{self.key(name)}.v{version}.emu"

    # -- manifest --------------------------------------------------------------

    def versions(self, name: str) -> list[PatchVersion]:
        """The patch versions of ``name``, oldest first (empty: the compiled one answers)."""
        path = self.manifest_path(name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        if size > _MANIFEST_MAX_BYTES:
            raise PayloadTooBig(f"{path}: manifest of {size} bytes is past {_MANIFEST_MAX_BYTES}")
        try:
            doc = json.loads(path.read_bytes())
            versions = [
                PatchVersion(
                    int(v["version"]),
                    str(v["file"]),
                    tuple((int(x), int(y)) for x, y in v["patches"]),
                )
                for v in doc["versions"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifact(f"{path}: unreadable patch manifest ({exc})") from None
        for v in versions:
            # Version files live next to the manifest; never follow a path out of it.
            if not _NAME.fullmatch(v.file) or v.file.startswith("."):
                raise CorruptArtifact(f"{path}: bad version file name {v.file!r}")
        return versions

    def _write_versions(self, name: str, versions: list[PatchVersion]) -> None:
        segment = self.segment(name)
        doc = {
            "format": EMULATION_VERSION,
            "app": self.app_cls.name,
            "segment": name,
            "key": self.key(name),
            "in_bits": segment.in_bits,
            "out_bits": segment.out_bits,
            "versions": [
                {"version": v.version, "file": v.file, "patches": [list(p) for p in v.patches]}
                for v in versions
            ],
        }
        write_atomic(self.manifest_path(name), json.dumps(doc, indent=1).encode())

    def manifest_stamp(self, name: str) -> tuple[int, int] | None:
        """What ``refresh`` compares: the manifest's (mtime_ns, size), None when absent."""
        try:
            st = self.manifest_path(name).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    # -- emulators -------------------------------------------------------------

    def _load(self, path: Path) -> Any | None:
        """The emulator in ``path``; None when missing; an unreadable one logs and is None."""
        if not path.is_file():
            return None
        try:
            return self.codec.load_emulator(path)
        except CodecError as exc:
            # CorruptArtifact, or a format this codec no longer reads: rebuild it.
            log.warning("%s: corrupt cached emulator (%s); recompiling", path, exc)
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _compile(self, name: str, progress: bool) -> Any:
        segment = self.segment(name)
        bar = _Progress(f"{self.app_cls.name}:{name}") if progress else None
        log.info(
            "compiling %s:%s (%d -> %d bits)",
            self.app_cls.name,
            name,
            segment.in_bits,
            segment.out_bits,
        )
        try:
            return self.codec.compile_emulator(
                segment.reference,
                segment.in_bits,
                segment.out_bits,
                vectorized=True,
                seed=0,
                progress=bar,
            )
        finally:
            if bar is not None:
                bar.close()

    def _drop_stale(self, name: str) -> None:
        """Remove artifacts of this segment built from older code (other keys)."""
        if not self.root.is_dir():
            return
        keep = self.key(name)
        for path in self.root.glob(f"{name}-*"):
            rest = path.name[len(name) + 1 :]
            if not rest.startswith(keep) and re.match(r"^[0-9a-f]{20}[.]", rest):
                path.unlink(missing_ok=True)

    def cached_base(self, name: str) -> Any | None:
        """Version 0 from the cache, or None when it was never compiled (or is corrupt)."""
        return self._load(self.base_path(name))

    def base(self, name: str, *, progress: bool = True) -> Any:
        """Version 0, loaded from the cache or compiled and saved."""
        emu = self.cached_base(name)
        if emu is None:
            emu = self._compile(name, progress)
            self.root.mkdir(parents=True, exist_ok=True)
            self._drop_stale(name)
            _save_atomic(emu, self.base_path(name))
        return emu

    def current(self, name: str, *, progress: bool = True) -> tuple[Any, int]:
        """The emulator that answers now and its version; rebuilds lost version files."""
        emu = self.base(name, progress=progress)
        versions = self.versions(name)
        if not versions:
            return emu, 0
        newest = versions[-1]
        loaded = self._load(self.root / newest.file)
        if loaded is not None:
            return loaded, newest.version
        # A missing or corrupt version file is rebuilt from the patches in the manifest.
        for v in versions:
            emu = emu.patch(dict(v.patches))
        _save_atomic(emu, self.root / newest.file)
        return emu, newest.version

    def patch(self, name: str, pairs: Mapping[int, int], *, progress: bool = True) -> int:
        """Add a version answering ``y`` for each ``x`` in ``pairs``; returns its number."""
        segment = self.segment(name)
        if not pairs:
            raise ConfigError("nothing to patch: give X=Y pairs")
        if len(pairs) > _MAX_PATCHES:
            raise PayloadTooBig(f"{len(pairs)} patches in one version; at most {_MAX_PATCHES}")
        for x, y in pairs.items():
            if not 0 <= x < 1 << segment.in_bits:
                raise ConfigError(f"input {x:#x} does not fit in {segment.in_bits} bits")
            if not 0 <= y < 1 << segment.out_bits:
                raise ConfigError(f"output {y:#x} does not fit in {segment.out_bits} bits")
        emu, version = self.current(name, progress=progress)
        patched = emu.patch({int(x): int(y) for x, y in pairs.items()})
        new = version + 1
        path = self.version_path(name, new)
        _save_atomic(patched, path)
        versions = self.versions(name)
        versions.append(PatchVersion(new, path.name, tuple(sorted(pairs.items()))))
        self._write_versions(name, versions)
        return new

    def unpatch(self, name: str) -> int:
        """Drop the newest version; returns the version that answers now."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"{self.app_cls.name}:{name} has no patches to revert")
        dropped = versions.pop()
        if versions:
            self._write_versions(name, versions)
        else:
            self.manifest_path(name).unlink(missing_ok=True)
        (self.root / dropped.file).unlink(missing_ok=True)
        return versions[-1].version if versions else 0

    def info(self, name: str) -> SegmentInfo:
        """What is cached for ``name``, without compiling anything."""
        segment = self.segment(name)
        emu = self.cached_base(name)
        versions = self.versions(name) if emu is not None else []
        version = versions[-1].version if versions else 0
        if versions:
            emu = self._load(self.root / versions[-1].file) or emu
        report = emu.report() if emu is not None else {}
        verified = _verified(report, segment.in_bits) if emu is not None else None
        return SegmentInfo(
            app=self.app_cls.name,
            segment=name,
            in_bits=segment.in_bits,
            out_bits=segment.out_bits,
            key=self.key(name),
            compiled=emu is not None,
            version=version,
            nbytes=int(emu.nbytes) if emu is not None else None,
            packed_bytes=-(-(1 << segment.in_bits) * segment.out_bits // 8),
            verified=verified,
            review_regions=tuple(report.get("review_regions", ())),
        )


def _verified(report: Any, in_bits: int) -> bool:
    """Whether a report says every input of the domain was checked."""
    claim = report.get("verified", False) if isinstance(report, Mapping) else False
    if isinstance(claim, Mapping):
        return claim.get("kind") == "exhaustive" and int(claim.get("inputs", 0)) >= 1 << in_bits
    return bool(claim)


class EmulatedRunner(Mapping[str, Callable[[np.ndarray], np.ndarray]]):
    """A ``SegmentRunner`` whose segments answer from emulators; counts what it does.

    ``queries[name]`` counts inputs answered, ``fallbacks[name]`` those that had to
    go to the reference code (inputs outside the emulator's domain; 0 for apps
    whose inputs stay in range, since every domain here is verified exhaustively).
    """

    def __init__(self, store: SegmentStore, *, progress: bool = True) -> None:
        self.store = store
        self.emulators: dict[str, Any] = {}
        self.versions: dict[str, int] = {}
        self.queries: dict[str, int] = {}
        self.fallbacks: dict[str, int] = {}
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._calls = {name: self._caller(name) for name in store.segments}
        for name in store.segments:
            self.queries[name] = 0
            self.fallbacks[name] = 0
            self._load(name, progress)

    def _load(self, name: str, progress: bool = True) -> None:
        stamp = self.store.manifest_stamp(name)
        self.emulators[name], self.versions[name] = self.store.current(name, progress=progress)
        self._stamps[name] = stamp

    def _caller(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        segment = self.store.segment(name)
        limit = np.uint64((1 << segment.in_bits) - 1)

        def call(codes: np.ndarray) -> np.ndarray:
            codes = np.asarray(codes, dtype=np.uint64)
            self.queries[name] += int(codes.size)
            outside = codes > limit
            if outside.any():
                out = np.empty(codes.shape, dtype=np.uint64)
                out[outside] = np.asarray(segment.reference(codes[outside]), dtype=np.uint64)
                inside = ~outside
                out[inside] = self._query(name, codes[inside])
                self.fallbacks[name] += int(outside.sum())
                return out
            return self._query(name, codes)

        return call

    def _query(self, name: str, codes: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(codes.ravel())
        return np.asarray(self.emulators[name].query(flat), dtype=np.uint64).reshape(codes.shape)

    def __getitem__(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        return self._calls[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    def refresh(self) -> list[str]:
        """Reload every segment whose patch manifest changed; returns their names.

        Cheap (one ``stat`` per segment), so a server may call it once per tick or second.
        """
        changed = []
        for name in self._calls:
            if self.store.manifest_stamp(name) != self._stamps[name]:
                self._load(name, progress=False)
                changed.append(name)
        return changed

    def patch(self, name: str, pairs: Mapping[int, int]) -> int:
        """Patch ``name`` in the store and answer from the new version at once."""
        version = self.store.patch(name, pairs)
        self._load(name)
        return version

    def unpatch(self, name: str) -> int:
        version = self.store.unpatch(name)
        self._load(name)
        return version

    def patches(self, name: str) -> list[PatchVersion]:
        return self.store.versions(name)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "queries": self.queries[name],
                "fallbacks": self.fallbacks[name],
                "version": self.versions[name],
            }
            for name in self._calls
        }


def load_or_compile_segments(
    app_cls: type[App],
    data_dir: Path | str,
    progress: bool = True,
    *,
    codec: Any | None = None,
) -> EmulatedRunner:
    """A runner backed by ``app_cls``'s emulators, compiling (and caching) what is missing.

    Blocking and possibly long on first use: call it from an executor in async code.
    """
    store = SegmentStore(app_cls, Path(data_dir), codec=codec)
    return EmulatedRunner(store, progress=progress)


def segment_summary(
    app_cls: type[App], data_dir: Path | str, *, codec: Any | None = None
) -> list[SegmentInfo]:
    """One ``SegmentInfo`` per segment of ``app_cls`` (nothing is compiled)."""
    store = SegmentStore(app_cls, Path(data_dir), codec=codec)
    return [store.info(name) for name in store.segments]

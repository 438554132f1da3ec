"""The viewer app: a stored file's picture, regenerated on the server, streamed as tiles.

::

    Document(name, size, type, read(start, end)) ─► kind: image | text | hex
        image: read all ─► PIL decode ─► scale to fit ─► body
        text:  read all (<= 8 MiB) ─► wrap at 80 columns ─► lines[top : top + 28]
        hex:   read(top*16, (top+28)*16) only ─► "offset  hex bytes  |ascii|"
    characters ─► glyph codes (c << 7 | y << 3 | x) ─► runner["glyph"] ─► 8x16 cells ─► blend

    keys: ArrowDown/ArrowUp one line, PageDown/PageUp/space one page, Home/End

The recipient's connection carries only tiles of this picture: the file's
bytes stay on the server (``read`` is a range reader over the block store).
The glyph segment (``in 14 bits -> grey 4 bits``) is a table rasterized at
start-up from Pillow's bundled FreeType font, so it can run through emulators
like every other segment.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from simulacra.apps.base import App, InputEvent, Segment, SegmentRunner
from simulacra.apps.font import blend
from simulacra.fsutil import human_size

__all__ = [
    "ViewerApp",
    "ViewerState",
    "Document",
    "viewer_for_entry",
    "viewer_glyph_reference",
    "VIEWER_GLYPH_IN_BITS",
    "MAX_TEXT_BYTES",
    "MAX_IMAGE_BYTES",
]

CELL_W, CELL_H = 8, 16
VIEWER_GLYPH_IN_BITS = 7 + 4 + 3  # glyph (ASCII code), y, x
_GREY_MAX = 15
WIDTH, HEIGHT = 640, 480
COLS = WIDTH // CELL_W
HEADER_ROWS = 2
ROWS = HEIGHT // CELL_H - HEADER_ROWS
MAX_TEXT_BYTES = 8 * 1024 * 1024
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
HEX_BYTES_PER_LINE = 16
_BG = (250, 248, 240)
_FG = (40, 40, 48)
_HEADER_BG = (52, 64, 84)
_HEADER_FG = (240, 240, 240)
_DIM = (150, 160, 175)


def _rasterize() -> np.ndarray:
    """(128, 16, 8) grey 0..15: printable ASCII, condensed into 8-pixel cells."""
    font = ImageFont.load_default(size=13)
    table = np.zeros((128, CELL_H, CELL_W), dtype=np.uint8)
    for code in range(33, 127):
        wide = Image.new("L", (CELL_W * 2, CELL_H), 0)
        ImageDraw.Draw(wide).text((CELL_W, 12), chr(code), font=font, fill=255, anchor="ms")
        ink = wide.getbbox()
        if ink is None:
            continue
        left, right = ink[0], ink[2]
        if right - left > CELL_W - 1:  # wide glyphs (m, W, @) are squeezed, not clipped
            cropped = wide.crop((left, 0, right, CELL_H)).resize(
                (CELL_W - 1, CELL_H), Image.Resampling.BOX
            )
            cell = Image.new("L", (CELL_W, CELL_H), 0)
            cell.paste(cropped, (0, 0))
        else:
            cell = wide.crop((CELL_W // 2, 0, CELL_W // 2 + CELL_W, CELL_H))
        grey = np.asarray(cell, dtype=np.uint32)
        table[code] = (grey * _GREY_MAX + 127) // 255
    # 127 is the "no glyph" box for characters the table does not hold.
    table[127, 2:13, 1:7] = _GREY_MAX
    table[127, 3:12, 2:6] = 0
    table.setflags(write=False)
    return table


_GLYPHS = _rasterize()
_CELL_OFFSETS = (
    (np.arange(CELL_H, dtype=np.uint64)[:, None] << np.uint64(3))
    | np.arange(CELL_W, dtype=np.uint64)[None, :]
).ravel()


def viewer_glyph_reference(codes: np.ndarray) -> np.ndarray:
    """Segment ``glyph``: ``(c << 7) | (y << 3) | x`` -> grey 0..15 of ASCII char ``c``."""
    codes = np.asarray(codes, dtype=np.uint64) & np.uint64((1 << VIEWER_GLYPH_IN_BITS) - 1)
    c = (codes >> np.uint64(7)).astype(np.intp)
    y = ((codes >> np.uint64(3)) & np.uint64(15)).astype(np.intp)
    x = (codes & np.uint64(7)).astype(np.intp)
    return _GLYPHS[c, y, x].astype(np.uint64)


def _printable(text: str) -> str:
    """Printable ASCII as is, a tab as a space, anything else as the "no glyph" box (127)."""
    return "".join(ch if 32 <= ord(ch) < 127 else (" " if ch == "\t" else "\x7f") for ch in text)


@dataclass(frozen=True, slots=True)
class Document:
    """What the viewer shows: metadata and a range reader; never held as a whole."""

    name: str
    size: int
    type: str
    read: Callable[[int, int], bytes]
    rights: str = "view"


@dataclass(frozen=True, slots=True)
class ViewerState:
    top: int = 0  # first body line shown


class ViewerApp(App):
    """One file's picture with paging; without a document it shows a blank page."""

    name: ClassVar[str] = "viewer"
    title: ClassVar[str] = "Viewer"
    width: ClassVar[int] = WIDTH
    height: ClassVar[int] = HEIGHT
    tick_hz: ClassVar[float] = 0.0
    segments: ClassVar[tuple[Segment, ...]] = (
        Segment(
            "glyph",
            VIEWER_GLYPH_IN_BITS,
            4,
            viewer_glyph_reference,
            "grey level of pixel (y, x) of ASCII char c in an 8x16 cell: c << 7 | y << 3 | x",
        ),
    )

    def __init__(
        self, runner: SegmentRunner | None = None, document: Document | None = None
    ) -> None:
        super().__init__(runner)
        self.document = document
        self.kind = "empty"
        self._lines: list[str] = []
        self._image: np.ndarray | None = None
        self._cells: dict[int, np.ndarray] = {}
        self._loaded = False

    def _ensure_loaded(self) -> None:
        # Reading and decoding happen on the session's worker, never in the constructor.
        if not self._loaded:
            self._loaded = True
            if self.document is not None:
                self._load(self.document)

    # -- content -----------------------------------------------------------------

    def _load(self, doc: Document) -> None:
        if doc.type.startswith("image/") and doc.size <= MAX_IMAGE_BYTES:
            picture = self._decode_image(doc.read(0, doc.size))
            if picture is not None:
                self.kind, self._image = "image", picture
                return
        if doc.size <= MAX_TEXT_BYTES:
            head = doc.read(0, min(doc.size, 4096))
            if doc.type.startswith("text/") or _looks_like_text(head):
                data = doc.read(0, doc.size)
                if b"\x00" not in data[:65536]:
                    self.kind = "text"
                    self._lines = _wrap(data.decode("utf-8", errors="replace"), COLS)
                    return
        self.kind = "hex"

    @staticmethod
    def _decode_image(data: bytes) -> np.ndarray | None:
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    return None
                img.load()
                rgb = img.convert("RGB")
        except Exception:  # not an image Pillow can read: shown as hex instead
            return None
        box_w, box_h = WIDTH, HEIGHT - HEADER_ROWS * CELL_H
        scale = min(box_w / rgb.width, box_h / rgb.height)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
        return np.asarray(rgb.resize(size, resample), dtype=np.uint8)

    @property
    def line_count(self) -> int:
        if self.kind == "text":
            return len(self._lines)
        if self.kind == "hex" and self.document is not None:
            return -(-self.document.size // HEX_BYTES_PER_LINE)
        return 0

    def _body_lines(self, top: int) -> list[str]:
        if self.kind == "text":
            return self._lines[top : top + ROWS]
        if self.kind == "hex" and self.document is not None:
            start = top * HEX_BYTES_PER_LINE
            end = min(self.document.size, start + ROWS * HEX_BYTES_PER_LINE)
            data = self.document.read(start, end) if start < end else b""
            return [
                _hex_line(start + i, data[i : i + HEX_BYTES_PER_LINE])
                for i in range(0, len(data), HEX_BYTES_PER_LINE)
            ]
        return []

    # -- App protocol --------------------------------------------------------------

    def reset(self, seed: int) -> ViewerState:
        self._ensure_loaded()
        return ViewerState(0)

    def step(self, state: ViewerState, event: InputEvent | None) -> ViewerState:
        self._ensure_loaded()
        if event is None or event.kind != "key":
            return state
        last = max(0, self.line_count - ROWS)
        moves = {
            "ArrowDown": 1, "s": 1, "j": 1,
            "ArrowUp": -1, "w": -1, "k": -1,
            "PageDown": ROWS, " ": ROWS,
            "PageUp": -ROWS,
        }  # fmt: skip
        if event.key == "Home":
            top = 0
        elif event.key == "End":
            top = last
        elif event.key in moves:
            top = min(max(0, state.top + moves[event.key]), last)
        else:
            return state
        return ViewerState(top)

    def render(self, state: ViewerState) -> np.ndarray:
        self._ensure_loaded()
        fb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        fb[:] = _BG
        header = fb[: HEADER_ROWS * CELL_H]
        header[:] = _HEADER_BG
        doc = self.document
        title = doc.name if doc is not None else "no file open"
        self._text(header, 0, 0, title[:COLS], _HEADER_FG)
        self._text(header, 1, 0, self._status(state)[:COLS], _DIM)
        body = fb[HEADER_ROWS * CELL_H :]
        if self.kind == "image" and self._image is not None:
            h, w = self._image.shape[:2]
            y0, x0 = (body.shape[0] - h) // 2, (body.shape[1] - w) // 2
            body[y0 : y0 + h, x0 : x0 + w] = self._image
        else:
            for row, line in enumerate(self._body_lines(state.top)):
                self._text(body, row, 0, line, _FG)
        return fb

    def _status(self, state: ViewerState) -> str:
        doc = self.document
        if doc is None:
            return ""
        parts = [doc.type, human_size(doc.size), doc.rights]
        if self.kind in ("text", "hex") and self.line_count:
            last = min(self.line_count, state.top + ROWS)
            parts.append(f"lines {state.top + 1}-{last} of {self.line_count}")
        elif self.kind == "image" and self._image is not None:
            parts.append(f"image scaled to {self._image.shape[1]}x{self._image.shape[0]}")
        return "  |  ".join(parts)

    def _text(
        self, region: np.ndarray, row: int, col: int, text: str, colour: tuple[int, int, int]
    ) -> None:
        """Draw one line through the glyph segment (one call for the line's new glyphs)."""
        text = _printable(text)[: COLS - col]
        if not text.strip():
            return
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        missing = sorted({int(c) for c in codes} - self._cells.keys())
        if missing:
            inputs = (np.asarray(missing, dtype=np.uint64)[:, None] << np.uint64(7)) | _CELL_OFFSETS
            grey = np.asarray(self.runner["glyph"](inputs.ravel()), dtype=np.uint64)
            cells = np.minimum(grey, _GREY_MAX).astype(np.uint8).reshape(-1, CELL_H, CELL_W)
            if len(self._cells) > 512:
                self._cells.clear()
            for code, cell in zip(missing, cells, strict=True):
                self._cells[code] = cell
        alpha = np.concatenate([self._cells[int(c)] for c in codes], axis=1)
        y, x = row * CELL_H, col * CELL_W
        blend(region[y : y + CELL_H, x : x + alpha.shape[1]], alpha, colour)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the sample's end
    return True


def _wrap(text: str, cols: int) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.expandtabs(4)
        if not line:
            lines.append("")
        while line:
            lines.append(line[:cols])
            line = line[cols:]
    if lines and lines[-1] == "" and text.endswith("\n"):
        lines.pop()
    return lines


def _hex_line(offset: int, data: bytes) -> str:
    hexes = " ".join(f"{b:02x}" for b in data).ljust(HEX_BYTES_PER_LINE * 3 - 1)
    shown = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
    return f"{offset:08x}  {hexes}  |{shown}|"


def viewer_for_entry(
    files_store: Any, user_name: str, entry_id: str, runner: SegmentRunner | None = None
) -> ViewerApp:
    """A viewer of ``entry_id`` for ``user_name`` (``NotFound`` if it is not theirs).

    ``files_store`` is a ``simulacra.server.files.FilesStore`` (blocking: call it
    off the event loop).
    """
    entry, read = files_store.document_reader(user_name, entry_id)
    doc = Document(
        name=entry.name, size=entry.size, type=entry.type, read=read, rights=entry.rights
    )
    return ViewerApp(runner, doc)

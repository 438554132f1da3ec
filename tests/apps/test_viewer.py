import io

import numpy as np
import pytest
from PIL import Image

from simulacra.apps.base import InputEvent, reference_runner
from simulacra.apps.viewer import (
    CELL_H,
    CELL_W,
    COLS,
    HEADER_ROWS,
    HEIGHT,
    ROWS,
    VIEWER_GLYPH_IN_BITS,
    WIDTH,
    Document,
    ViewerApp,
    ViewerState,
    viewer_for_entry,
    viewer_glyph_reference,
)
from simulacra.errors import NotFound
from simulacra.server.files import FilesStore

BODY_Y = HEADER_ROWS * CELL_H


def _doc(data: bytes, type_: str = "application/octet-stream", reads=None) -> Document:
    def read(start: int, end: int) -> bytes:
        if reads is not None:
            reads.append((start, end))
        return data[start:end]

    return Document("f", len(data), type_, read)


def _key(key: str) -> InputEvent:
    return InputEvent(kind="key", key=key)


def test_glyph_segment_is_total_and_four_bit():
    (seg,) = ViewerApp.segments
    assert (seg.name, seg.in_bits, seg.out_bits) == ("glyph", VIEWER_GLYPH_IN_BITS, 4)
    every = viewer_glyph_reference(np.arange(1 << VIEWER_GLYPH_IN_BITS, dtype=np.uint64))
    assert every.dtype == np.uint64 and every.max() <= 15
    cells = every.reshape(128, CELL_H, CELL_W)
    assert cells[ord(" ")].sum() == 0 and cells[0].sum() == 0
    for ch in "AZaz09#@mW":
        assert cells[ord(ch)].sum() > 0, ch
    assert len({cells[c].tobytes() for c in range(33, 127)}) == 94  # every glyph distinct


def test_text_pages_and_renders_through_the_glyph_segment():
    lines = [f"line {i:03d} " + "x" * (i % 50) for i in range(100)]
    calls = []
    runner = reference_runner(ViewerApp.segments)
    glyph = runner["glyph"]
    runner["glyph"] = lambda codes: calls.append(len(codes)) or glyph(codes)
    app = ViewerApp(runner, _doc("\n".join(lines).encode(), "text/plain"))
    state = app.reset(0)
    fb = app.render(state)
    assert fb.shape == (HEIGHT, WIDTH, 3) and fb.dtype == np.uint8
    assert app.kind == "text" and app.line_count == 100
    assert calls and sum(calls) % (CELL_W * CELL_H) == 0
    # Row 0 of the body holds "line 000 ": ink under the text, none past it.
    row0 = fb[BODY_Y : BODY_Y + CELL_H]
    bg = fb[HEIGHT - 1, WIDTH - 1]
    assert (row0[:, : 8 * CELL_W] != bg).any()
    assert (row0[:, 10 * CELL_W :] == bg).all()
    assert app.step(state, _key("ArrowDown")) == ViewerState(1)
    assert app.step(state, _key("ArrowUp")) == ViewerState(0)
    page = app.step(state, _key("PageDown"))
    assert page == ViewerState(ROWS)
    assert app.step(page, _key("PageUp")) == ViewerState(0)
    assert app.step(state, _key("End")) == ViewerState(100 - ROWS)
    assert app.step(app.step(state, _key("End")), _key("PageDown")) == ViewerState(100 - ROWS)
    assert app.step(page, _key("Home")) == ViewerState(0)
    assert app.step(state, _key("q")) is state
    assert app.step(state, None) is state
    assert not np.array_equal(app.render(page), fb)
    # The same page twice is the same picture (the server diffs frames on it).
    assert np.array_equal(app.render(page), app.render(ViewerState(ROWS)))


def test_long_lines_wrap_at_the_screen_width():
    app = ViewerApp(document=_doc(b"a" * (COLS * 2 + 5) + b"\n\tb", "text/plain"))
    app.reset(0)
    assert app._lines == ["a" * COLS, "a" * COLS, "aaaaa", "    b"]


def test_hex_view_reads_only_the_page_it_shows():
    data = bytes(range(256)) * 4096  # 1 MiB
    reads: list[tuple[int, int]] = []
    app = ViewerApp(document=_doc(data, reads=reads))
    state = app.reset(0)
    app.render(state)
    assert app.kind == "hex" and app.line_count == len(data) // 16
    assert reads[-1] == (0, ROWS * 16)
    assert max(end - start for start, end in reads) <= 4096  # the kind sniff, then one page
    app.render(app.step(state, _key("End")))
    assert reads[-1] == (len(data) - ROWS * 16, len(data))


def test_image_is_scaled_to_fit():
    img = Image.new("RGB", (64, 32), (200, 30, 40))
    img.paste((10, 20, 230), (32, 0, 64, 32))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    app = ViewerApp(document=_doc(buf.getvalue(), "image/png"))
    fb = app.render(app.reset(0))
    assert app.kind == "image"
    body_h = HEIGHT - BODY_Y
    assert app._image is not None and app._image.shape == (320, 640, 3)
    top = BODY_Y + (body_h - 320) // 2
    assert tuple(fb[top + 100, 100]) == (200, 30, 40)
    assert tuple(fb[top + 100, 540]) == (10, 20, 230)
    assert app.step(ViewerState(0), _key("PageDown")) == ViewerState(0)


def test_broken_image_falls_back_to_hex():
    app = ViewerApp(document=_doc(b"\x89PNG not really" + bytes(100), "image/png"))
    app.render(app.reset(0))
    assert app.kind == "hex"


def test_no_document_is_a_blank_page():
    app = ViewerApp()
    fb = app.render(app.reset(0))
    assert app.kind == "empty" and fb.shape == (HEIGHT, WIDTH, 3)


def test_viewer_for_entry_checks_the_owner(tmp_path):
    store = FilesStore(tmp_path, try_emulator=False)
    entry = store.put_bytes("alice", "hello.txt", b"hello viewer\n")
    app = viewer_for_entry(store, "alice", entry.id)
    app.render(app.reset(0))
    assert app.kind == "text" and app.document is not None and app.document.name == "hello.txt"
    with pytest.raises(NotFound):
        viewer_for_entry(store, "mallory", entry.id)
    with pytest.raises(NotFound):
        viewer_for_entry(store, "alice", "not-an-entry")
    store.close()

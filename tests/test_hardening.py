"""Issue 23: what an outside probe found. Inspection of --data (a FIFO, a decompression bomb, a CSV whose path
column is not images), bundles whose manifest was edited or whose signature does not verify, disk-full lines
that name the file and the bytes, and one export of a bundle at a time."""

from __future__ import annotations

import base64
import errno
import os
import struct
import threading
import zlib
from pathlib import Path

import pytest
from yourdata import image_folder, image_manifest

from edgetl.data.inspect import load_starter, starter_recipe
from edgetl.errors import EdgetlError


def within(seconds: float, fn, *args):
    """fn(*args) in a thread; fails the test (instead of hanging it) when it does not return in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001  (handed back to the test)
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {seconds} s (a hang)"
    if "error" in box:
        raise box["error"]
    return box["value"]


def unblock(fifo: Path) -> None:
    """Open a FIFO's writing end once so a reader the old code left blocked can finish."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A valid PNG header claiming side x side pixels (900 M): Pillow refuses it as a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------ item 4: FIFO in --data
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_fifo_in_a_data_folder_is_refused_not_a_hang(tmp_path):
    root = image_folder(tmp_path / "photos", per_class=3, splits=False)
    fifo = root / "blue" / "0a.png"  # sorted first: inspection reaches it before any image
    os.mkfifo(fifo)
    try:
        with pytest.raises(EdgetlError) as e:
            within(20, starter_recipe, root)
    finally:
        unblock(fifo)
    assert "0a.png is a FIFO (named pipe), not a regular file" in e.value.message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_fifo_row_in_a_data_manifest_is_refused_not_a_hang(tmp_path):
    csv = image_manifest(tmp_path / "m", n=12)
    fifo = tmp_path / "m" / "images" / "0.png"
    fifo.unlink()
    os.mkfifo(fifo)
    try:
        with pytest.raises(EdgetlError, match=r"0\.png is a FIFO"):
            within(20, starter_recipe, csv)
    finally:
        unblock(fifo)


# ------------------------------------------------------------------------- item 5: decompression bomb in --data
def test_decompression_bomb_in_a_data_folder_is_skipped_and_named(tmp_path, caplog):
    root = image_folder(tmp_path / "photos", per_class=3, splits=False)
    bomb = bomb_png(root / "red" / "00-bomb.png")
    with caplog.at_level("WARNING", logger="edgetl"):
        recipe = starter_recipe(root)
    assert recipe["input"]["image_size"] == 64  # sized from the readable images
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert str(bomb) in warned and "DecompressionBombError" in warned
    assert "1 of the first 10 image(s) could not be read" in warned


def test_decompression_bomb_is_an_edgetl_error_when_decoded(tmp_path):
    from edgetl.data.decode import decode_image

    with pytest.raises(EdgetlError, match=r"bomb\.png: unreadable or truncated image \(DecompressionBombError"):
        decode_image(bomb_png(tmp_path / "bomb.png"), 32)


def test_predict_input_that_is_a_bomb_or_a_fifo_is_one_line(tmp_path):
    from edgetl.runtime.preprocess import load_image

    with pytest.raises(EdgetlError, match="cannot read image"):
        load_image(bomb_png(tmp_path / "bomb.png"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "in.png")
        try:
            with pytest.raises(EdgetlError, match="is a FIFO"):
                within(20, load_image, tmp_path / "in.png")
        finally:
            unblock(tmp_path / "in.png")


# ----------------------------------------------------------------- item 7: a CSV whose path column is not images
def test_csv_path_column_of_non_images_is_refused_naming_the_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("path,label\n" + "".join(f"scans/{i}.dat,{'ab'[i % 2]}\n" for i in range(12)))
    with pytest.raises(EdgetlError) as e:
        starter_recipe(p)
    msg = e.value.message
    assert "column 'path' holds file names (.dat) but not images" in msg and "\n" not in msg


def test_csv_path_column_mixing_images_and_other_files_names_one(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("file,label\n" + "".join(f"{i}.png,a\n" for i in range(5)) + "notes.txt,b\n")
    with pytest.raises(EdgetlError, match=r"column 'file' holds image files but also 'notes.txt' \(\.txt\)"):
        starter_recipe(p)


def test_text_csv_with_a_file_name_id_column_stays_a_text_task(tmp_path):
    p = tmp_path / "t.csv"
    rows = [f"doc{i}.txt,this is sentence number {i} of the corpus,{'ab'[i % 2]}" for i in range(12)]
    p.write_text("filename,text,label\n" + "\n".join(rows) + "\n")
    r = starter_recipe(p)
    assert r["input"]["kind"] == "text" and r["data"]["text_column"] == "text"


def test_starter_yaml_says_which_column_was_taken_for_what(tmp_path):
    _, text = load_starter(image_manifest(tmp_path / "m", n=12))
    head = [ln for ln in text.splitlines() if ln.startswith("# ")]
    assert "# column 'path': the image paths (every value ends in an image suffix)" in head
    assert "# column 'split': the split (values only train/val/test)" in head
    assert "# column 'size': a regression task" in head

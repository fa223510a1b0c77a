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
from tempfile import mkdtemp

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
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
@pytest.mark.parametrize("what", ["hosts file", "bench report", "bench data"])
def test_other_user_files_that_are_fifos_are_refused_not_a_hang(tmp_path, what):
    from edgetl.bench.harness import BenchData
    from edgetl.bench.merge import load_report
    from edgetl.bench.remote import read_hosts_file

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    read = {"hosts file": read_hosts_file, "bench report": load_report, "bench data": BenchData}[what]
    try:
        with pytest.raises(EdgetlError, match="pipe is a FIFO"):
            within(20, read, fifo)
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


# ------------------------------------------------------------------ item 6: one verification, signed bundles
def _bundle(tmp_path: Path) -> Path:
    from test_remote_sshd import make_bundle

    return make_bundle(tmp_path / "bundle", second_artifact=False)


def _edit_manifest(bundle: Path, edit) -> None:
    """Edit manifest.json as an attacker would: JSON in, JSON out (no re-validation by edgetl)."""
    import json

    data = json.loads((bundle / "manifest.json").read_text())
    edit(data)
    (bundle / "manifest.json").write_text(json.dumps(data, indent=2))


def _keys(tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    tmp_path.mkdir(parents=True, exist_ok=True)
    priv = tmp_path / "sign.pem"
    priv.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pub = tmp_path / "sign.pub.pem"
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, priv, pub


def _entry_points(bundle: Path, public_key=None):
    """Every way in: the CLI's verification, Predictor.load, the local bench, the remote bench's staging."""
    from edgetl.bench.harness import bench
    from edgetl.bench.remote import stage_bundle
    from edgetl.runtime import Predictor
    from edgetl.runtime.verify import verify_bundle

    return {
        "verify_bundle": lambda: verify_bundle(bundle, public_key=public_key),
        "Predictor.load": lambda: Predictor.load(bundle, public_key=public_key),
        "bench": lambda: bench(
            bundle,
            "auto",
            artifacts=["fp32"],
            batch_sizes=(1,),
            budget_s=0.01,
            out=bundle.parent / "o",
            public_key=public_key,
        ),  # fmt: skip
        "stage_bundle": lambda: stage_bundle(
            bundle, None, ["fp32"], Path(mkdtemp(dir=bundle.parent)) / "s", public_key
        ),
    }


def test_labels_edited_inside_the_manifest_are_refused_everywhere(tmp_path):
    bundle = _bundle(tmp_path)

    def rename(data):
        data["tasks"][0]["labels"][0] = "stop sign"

    _edit_manifest(bundle, rename)
    for call in _entry_points(bundle).values():
        with pytest.raises(EdgetlError, match=r"tasks\.color\.labels differ from labels/color\.txt"):
            call()


def test_predictor_load_checks_the_labels_files_hash(tmp_path):
    from edgetl.runtime import Predictor

    bundle = _bundle(tmp_path)
    (bundle / "labels" / "color.txt").write_text("red\ngreen\nbleu\n")
    with pytest.raises(EdgetlError, match=r"labels/color\.txt: sha256 mismatch"):
        Predictor.load(bundle)


def test_a_file_the_manifest_does_not_list_is_refused_but_bench_outputs_are_not(tmp_path):
    bundle = _bundle(tmp_path)
    for name in ("bench.json", "bench.md", "deepstream/config_infer.txt", ".model.fp32.onnx.tmp"):
        (bundle / name).parent.mkdir(exist_ok=True)
        (bundle / name).write_text("x")
    for call in _entry_points(bundle).values():
        call()  # what commands write beside a bundle is not part of it
    (bundle / "labels" / "extra.txt").write_text("planted\n")
    for call in _entry_points(bundle).values():
        with pytest.raises(EdgetlError, match=r"labels/extra\.txt: in the bundle but not listed in manifest\.json"):
            call()


def test_signed_bundle_verifies_with_its_key_and_an_edited_one_does_not(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from edgetl.runtime.manifest import bundle_file_hashes
    from edgetl.runtime.trust import SIGNATURE_NAME, sign_manifest

    bundle = _bundle(tmp_path)
    key, priv, pub = _keys(tmp_path)
    sign_manifest(bundle, priv)
    openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for public in (pub, openssh, raw, key.public_key()):  # a file, or the bytes a device app embeds
        for call in _entry_points(bundle, public).values():
            call()
    for call in _entry_points(bundle).values():  # no key given: signature not required
        call()
    # an attacker who edits the labels and every hash consistently: only the signature catches it
    (bundle / "labels" / "color.txt").write_text("stop\ngreen\nblue\n")

    def consistent(data):
        data["tasks"][0]["labels"][0] = "stop"
        data["files"] = bundle_file_hashes(bundle)

    _edit_manifest(bundle, consistent)
    for call in _entry_points(bundle).values():
        call()  # unsigned use cannot tell
    for call in _entry_points(bundle, pub).values():
        with pytest.raises(
            EdgetlError, match=r"signature manifest\.json\.sig does not verify with the given public key"
        ):
            call()
    other = _keys(tmp_path / "other")[0]
    sign_manifest(bundle, other)
    with pytest.raises(EdgetlError, match="does not verify"):
        _entry_points(bundle, pub)["Predictor.load"]()
    (bundle / SIGNATURE_NAME).unlink()
    with pytest.raises(EdgetlError, match=r"not signed \(no manifest\.json\.sig\)"):
        _entry_points(bundle, pub)["Predictor.load"]()
    (bundle / SIGNATURE_NAME).write_text(base64.b64encode(b"\0" * 64).decode() + "\n")
    with pytest.raises(EdgetlError, match="does not verify"):
        _entry_points(bundle, pub)["verify_bundle"]()


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`edgetl ARGS` through the console entry point (errors become one line and an exit status)."""
    import sys

    from edgetl.cli import main

    monkeypatch.setattr(sys, "argv", ["edgetl", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_predict_public_key(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from edgetl.runtime.trust import sign_manifest

    bundle = _bundle(tmp_path)
    _, priv, pub = _keys(tmp_path)
    img = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(img)
    code, _, err = _cli(monkeypatch, capsys, "predict", bundle, img, "--public-key", pub)
    assert code != 0 and err.startswith("error: ") and "not signed" in err and err.count("\n") == 1
    sign_manifest(bundle, priv)
    code, out, _ = _cli(monkeypatch, capsys, "predict", bundle, img, "--public-key", pub)
    assert code == 0 and "color=red" in out, out
    code, _, err = _cli(monkeypatch, capsys, "predict", bundle, img, "--public-key", priv)
    assert code != 0 and "not an Ed25519 public key" in err


def test_keys_that_are_not_ed25519_are_one_line(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from edgetl.runtime.trust import load_private_key, load_public_key

    ecdsa = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "ec.pem"
    p.write_bytes(
        ecdsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(EdgetlError, match="not an Ed25519 private key"):
        load_private_key(p)
    with pytest.raises(EdgetlError, match="not an Ed25519 public key"):
        load_public_key(b"garbage that is no key")
    with pytest.raises(EdgetlError, match="not found"):
        load_public_key(tmp_path / "missing.pub")


def test_verifying_a_signature_without_cryptography_names_the_install(tmp_path, monkeypatch):
    import sys

    from edgetl.runtime import Predictor

    bundle = _bundle(tmp_path)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # as on a device without it
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    with pytest.raises(EdgetlError, match=r"pip install 'edgetl\[sign\]'"):
        Predictor.load(bundle, public_key=tmp_path / "k.pub")
    Predictor.load(bundle)  # no key: cryptography is never imported


# ---------------------------------------------------------------- item 8: a full disk names the file and the bytes
@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),  # a library's write: no file name in the error
        RuntimeError(
            "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
            "data/0: file write failed: No space left on device"
        ),  # fmt: skip  (C++ writers)
    ],
)
def test_disk_full_during_export_names_the_file_and_the_space_needed(tmp_path, failure):
    from edgetl.bundle.transaction import bundle_transaction
    from edgetl.errors import StorageError

    out = tmp_path / "export"
    with pytest.raises(StorageError) as e:
        with bundle_transaction(out) as staging:
            (staging / "model.fp32.onnx").write_bytes(b"\0" * 300_000)
            (staging / "model.int8-ort.onnx").write_bytes(b"\0" * 1000)  # being written when the disk filled
            raise failure
    msg = e.value.message
    assert f"{out / 'model.int8-ort.onnx'}: No space left on device" in msg, msg
    assert "needs more than the 0.3 MB written" in msg and "MB free there" in msg and "\n" not in msg
    assert not out.exists() and not list(tmp_path.glob(".export.staging-*"))  # nothing left behind


# ------------------------------------------------------------------- item 9: one export of a bundle at a time
def test_second_export_of_the_same_bundle_is_refused_naming_the_holder(tmp_path):
    from edgetl.bundle.transaction import bundle_transaction

    class Stop(Exception):
        """Ends a transaction before its (empty) bundle would be verified."""

    out = tmp_path / "export"
    with pytest.raises(Stop):
        with bundle_transaction(out):
            with pytest.raises(EdgetlError, match=rf"another export of this bundle is running \(PID {os.getpid()}\)"):
                with bundle_transaction(out):
                    pass
            with pytest.raises(Stop):
                with bundle_transaction(tmp_path / "other"):  # another bundle is not blocked
                    raise Stop
            raise Stop
    with pytest.raises(Stop):
        with bundle_transaction(out):  # released when the first one ended
            raise Stop


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX locks")
def test_export_lock_of_a_killed_process_is_free_again(tmp_path):
    import signal
    import subprocess
    import sys

    from edgetl.bundle.export_lock import export_lock

    out = tmp_path / "export"
    code = (
        "import sys, time\nfrom edgetl.bundle.export_lock import export_lock\n"
        f"with export_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(EdgetlError, match=rf"\(PID {child.pid}\)"):
            with export_lock(out):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    with export_lock(out):  # the kernel released it with the process
        pass


def test_cli_export_sign_then_predict_with_the_public_key(trained_run, tmp_path, monkeypatch, capsys):
    """The whole path: `edgetl export --sign`, then `edgetl predict --public-key` on the signed bundle."""
    from PIL import Image

    from edgetl.runtime.trust import SIGNATURE_NAME

    _, priv, pub = _keys(tmp_path)
    out = tmp_path / "signed"
    code, stdout, err = _cli(monkeypatch, capsys, "export", trained_run.dir, "--out", out, "--sign", priv, "--quiet")
    assert code == 0, err
    # the signature is written last by export_run (the progress line says so; --quiet hides it): it must verify
    assert (out / SIGNATURE_NAME).is_file()
    img = tmp_path / "digit.png"
    Image.new("L", (8, 8), 128).save(img)
    code, stdout, err = _cli(monkeypatch, capsys, "predict", out, img, "--public-key", pub)
    assert code == 0 and "digit=" in stdout, err
    # a re-export without --sign drops the old signature: a keyed load then says "not signed"
    code, _, err = _cli(monkeypatch, capsys, "export", trained_run.dir, "--out", out, "--quiet")
    assert code == 0 and not (out / SIGNATURE_NAME).exists(), err
    code, _, err = _cli(monkeypatch, capsys, "predict", out, img, "--public-key", pub)
    assert code != 0 and "not signed" in err


def test_edgetl_eval_of_an_artifact_goes_through_the_same_verification(exported_run, tmp_path):
    """`edgetl eval --artifact` read the manifest as plain JSON and trusted it; now it checks like predict."""
    import json
    import shutil

    from edgetl.runs.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(exported_run.dir, run)
    manifest = run / "export" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["tasks"][0]["labels"][0] = "edited"
    manifest.write_text(json.dumps(data))
    with pytest.raises(EdgetlError, match=r"labels differ from labels/digit\.txt"):
        evaluate_run(run, "fp32")

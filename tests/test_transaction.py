"""Issue 16: bundles are transactions, every byte a bundle loads is hashed, hostile inputs never hang.

Export builds beside the old bundle and swaps only a verified bundle in; bench and predict refuse a bundle
that does not verify; ONNX external data must be listed and hashed; OS errors are one line with no partial
file; recipes and manifests have size limits checked before parsing; FIFOs are refused, not read.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, tiny_recipe_dict
from PIL import Image

from edgetl.errors import EdgetlError, StorageError
from edgetl.runtime.manifest import bundle_file_hashes, sha256_file


def cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "edgetl", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )
    return p, time.perf_counter() - t0


def one_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode != 0, p.stdout
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def hashes(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): sha256_file(p) for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture()
def bundle_copy(exported_run, tmp_path) -> Path:
    return Path(shutil.copytree(exported_run.dir / "export", tmp_path / "export"))


def _relist(bundle: Path) -> None:
    """Rewrite manifest `files` (and artifact sha256) from what is on disk, like an export would."""
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"] = bundle_file_hashes(bundle)
    for a in m["artifacts"].values():
        a["sha256"] = m["files"][a["file"]]
    (bundle / "manifest.json").write_text(json.dumps(m))


def _to_external_data(bundle: Path, location: str = "weights.bin") -> Path:
    import onnx

    model_path = bundle / "model.fp32.onnx"
    model = onnx.load(str(model_path))
    onnx.save(
        model,
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return bundle / location


# --------------------------------------------------------------------------------------- external data
def test_unlisted_external_data_is_refused(bundle_copy):
    from edgetl.runtime import Predictor

    _relist(bundle_copy)
    weights = _to_external_data(bundle_copy)  # after relisting: weights.bin is not in `files`
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["files"]["model.fp32.onnx"] = m["artifacts"]["fp32"]["sha256"] = sha256_file(bundle_copy / "model.fp32.onnx")
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    assert weights.stat().st_size > 1_000_000
    with pytest.raises(EdgetlError, match=r"weights\.bin: external data of model\.fp32\.onnx is not listed"):
        Predictor.load(bundle_copy, artifact="fp32")
    # the other artifact has no external data, but nothing vouches for a file the manifest does not list
    with pytest.raises(EdgetlError, match=r"weights\.bin: in the bundle but not listed in manifest\.json"):
        Predictor.load(bundle_copy, artifact="int8-ort")
    weights.unlink()
    Predictor.load(bundle_copy, artifact="int8-ort")


def test_half_zeroed_external_data_is_refused(bundle_copy, exported_run):
    from edgetl.runtime import Predictor

    weights = _to_external_data(bundle_copy)
    _relist(bundle_copy)  # listed with its sha256: loads and predicts
    x = np.zeros((1, 32, 32, 3), np.uint8)
    Predictor.load(bundle_copy, artifact="fp32").predict(x)
    data = bytearray(weights.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)
    weights.write_bytes(bytes(data))
    with pytest.raises(EdgetlError, match=r"weights\.bin: sha256 mismatch"):
        Predictor.load(bundle_copy, artifact="fp32")
    p, _ = cli("predict", str(bundle_copy), "--artifact", "fp32", str(REPO / "README.md"))
    one_line(p, "weights.bin", "sha256 mismatch")


def test_external_data_found_without_onnx_installed(bundle_copy):
    """The device fallback (no `onnx` package) finds the same locations from the protobuf bytes."""
    from edgetl.runtime.manifest import _scan_locations, onnx_external_data

    (bundle_copy / "w").mkdir()
    _to_external_data(bundle_copy, "w/data one.bin")
    path = bundle_copy / "model.fp32.onnx"
    assert onnx_external_data(path) == ["w/data one.bin"]
    assert _scan_locations(path.read_bytes()) == ["w/data one.bin"]
    swapped = b"\x12\x09other.bin\x0a\x08location"  # value before key: still found
    assert _scan_locations(b"junk" + swapped) == ["other.bin"]


def test_export_lists_external_data_of_large_models(trained_run, tmp_path, monkeypatch):
    """Above EXTERNAL_DATA_BYTES the weights go to <file>.data, listed and hashed like the model."""
    from edgetl.bundle.pipeline import ExportOptions, export_run
    from edgetl.export import onnx_export
    from edgetl.runtime import Predictor

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 1000)
    out = export_run(trained_run.dir, ExportOptions(out_dir=tmp_path / "big", progress=False))
    m = json.loads((out / "manifest.json").read_text())
    assert m["artifacts"]["fp32"]["external_data"] == ["model.fp32.onnx.data"]
    assert m["files"]["model.fp32.onnx.data"] == sha256_file(out / "model.fp32.onnx.data")
    Predictor.load(out, artifact="fp32")


# ---------------------------------------------------------------------------------- bench and predict
def test_bench_and_predict_refuse_a_hash_mismatch_and_keep_the_report(exported_run, tmp_path):
    run = Path(shutil.copytree(exported_run.dir, tmp_path / "run"))
    report = run / "bench.json"
    report.write_text('{"earlier": true}\n')
    with open(run / "export" / "model.int8-ort.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 64)
    p, _ = cli("bench", str(run), "--budget", "0.05", "--batch", "1")
    one_line(p, "model.int8-ort.onnx", "sha256 mismatch")
    assert report.read_text() == '{"earlier": true}\n'
    p, _ = cli("predict", str(run / "export"), "--artifact", "fp32", str(REPO / "README.md"))
    one_line(p, "model.int8-ort.onnx", "sha256 mismatch")  # not the artifact that runs: still refused
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    p, _ = cli("predict", str(run / "export"), "--artifact", "fp32", "--skip-verify", str(img))
    assert p.returncode == 0, p.stderr


# ------------------------------------------------------------------------------------ transactions
def test_stale_staging_and_interrupted_swap_are_recovered(tmp_path):
    from edgetl.bundle.transaction import recover

    out = tmp_path / "export"
    (tmp_path / "export.prev").mkdir()
    (tmp_path / "export.prev" / "manifest.json").write_text("{}")
    stale = tmp_path / ".export.staging-999999999"
    stale.mkdir()
    (stale / "model.fp32.onnx").write_bytes(b"partial")
    recover(out)  # killed between the two renames: the previous bundle goes back
    assert (out / "manifest.json").is_file() and not (tmp_path / "export.prev").exists() and not stale.exists()
    (tmp_path / "export.prev").mkdir()
    recover(out)  # killed after the swap: the old copy is removed
    assert not (tmp_path / "export.prev").exists() and (out / "manifest.json").is_file()


def test_export_refuses_to_replace_a_directory_that_is_not_a_bundle(trained_run, tmp_path):
    from edgetl.bundle.pipeline import ExportOptions, export_run

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(EdgetlError, match="not a bundle"):
        export_run(trained_run.dir, ExportOptions(out_dir=tmp_path, progress=False))
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["enospc", "sigint", "verification"])
def test_failed_export_leaves_the_previous_bundle_byte_identical(exported_run, tmp_path, monkeypatch, failure):
    from edgetl.bundle import pipeline
    from edgetl.bundle.transaction import ExportInterrupted

    run = Path(shutil.copytree(exported_run.dir, tmp_path / "run"))
    (run / "export" / "bench_data.npz").write_bytes(b"user file")
    before = hashes(run / "export")
    real = pipeline.evaluate_onnx

    def broken(path, *a, **kw):
        if failure == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        if failure == "sigint":
            raise KeyboardInterrupt
        with open(path, "r+b") as fh:  # damage the staged model after it was hashed
            fh.seek(500)
            fh.write(b"\xff" * 32)
        return real(path, *a, **kw)

    if failure == "verification":
        monkeypatch.setattr(pipeline, "_entry", _damaging_entry(pipeline._entry))
    else:
        monkeypatch.setattr(pipeline, "evaluate_onnx", broken)
    kind = {"enospc": StorageError, "sigint": ExportInterrupted, "verification": EdgetlError}[failure]
    with pytest.raises(kind) as e:
        pipeline.export_run(run, pipeline.ExportOptions(progress=False))
    msg = str(e.value)
    assert "\n" not in msg and "unchanged" in msg and ".staging" not in msg, msg
    if failure == "enospc":
        assert "No space left on device" in msg and str(run / "export") in msg
    if failure == "verification":  # damaged after it was hashed: the artifact sha256 no longer matches
        assert msg.startswith("export failed verification: ") and "model.fp32.onnx" in msg, msg
    assert hashes(run / "export") == before
    assert sorted(p.name for p in run.iterdir() if "export" in p.name) == ["export"]  # no staging, no .prev
    # and a good export afterwards replaces it, keeping the user's file
    monkeypatch.undo()
    pipeline.export_run(run, pipeline.ExportOptions(progress=False))
    assert (run / "export" / "bench_data.npz").read_bytes() == b"user file"
    assert sorted(p.name for p in run.iterdir() if "export" in p.name) == ["export"]


def _damaging_entry(real):
    def entry(name, out, *a, **kw):
        result = real(name, out, *a, **kw)
        with open(out / result["file"], "r+b") as fh:
            fh.seek(500)
            fh.write(b"\xff" * 32)
        return result

    return entry


# ------------------------------------------------------------------------------------------- OS errors
def test_atomic_write_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from edgetl.runtime import atomic

    target = tmp_path / "run.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(StorageError) as e:
        atomic.atomic_write_text(target, "x" * 5000)
    msg = str(e.value)
    assert str(target) in msg and "No space left on device" in msg and "needs 5000 bytes" in msg, msg
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


# -------------------------------------------------------------------------------------- limits, FIFOs
def test_13_million_item_recipe_fails_fast_with_one_line(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "w") as fh:
        fh.write(yaml.safe_dump(tiny_recipe_dict()))
        fh.write("description: [" + "1," * 13_000_000 + "1]\n")
    p, seconds = cli("train", str(big), "--runs-dir", str(tmp_path / "runs"))
    one_line(p, "big.yaml", "MB limit")
    assert seconds < 5, seconds
    assert not (tmp_path / "runs").exists()


def test_recipe_under_the_size_limit_with_too_many_values_fails_fast(tmp_path):
    from edgetl.recipe import load_recipe

    p = tmp_path / "many.yaml"
    p.write_text(yaml.safe_dump(tiny_recipe_dict()) + "description: [" + "1," * 400_000 + "1]\n")
    assert p.stat().st_size < 1_000_000
    t0 = time.perf_counter()
    with pytest.raises(EdgetlError, match="more than 100000 values"):
        load_recipe(p)
    assert time.perf_counter() - t0 < 5


def test_oversized_manifest_is_refused_before_parsing(tmp_path):
    from edgetl.runtime.manifest import read_manifest

    (tmp_path / "manifest.json").write_text('{"pad": "' + "x" * 10_000_001 + '"}')
    with pytest.raises(EdgetlError, match="over the 10 MB limit"):
        read_manifest(tmp_path)


def _csv_dataset(tmp_path: Path, fifo_row: bool) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    rows = ["path,label"]
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(d / f"{i}.png")
        rows.append(f"{i}.png,{'ab'[i % 2]}")
    if fifo_row:
        os.mkfifo(d / "pipe.png")
        rows.insert(3, "pipe.png,a")
    (d / "data.csv").write_text("\n".join(rows) + "\n")
    return d / "data.csv"


def _csv_recipe(tmp_path: Path, data_path: Path) -> Path:
    r = tiny_recipe_dict(
        **{"data": {"source": "csv", "path": str(data_path)}, "tasks": [{"name": "label", "kind": "classification"}]}
    )
    p = tmp_path / "csv.yaml"
    p.write_text(yaml.safe_dump(r))
    return p


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_row_fails_fast_with_one_line_and_no_run_dir(tmp_path):
    recipe = _csv_recipe(tmp_path, _csv_dataset(tmp_path, fifo_row=True))
    p, seconds = cli("train", str(recipe), "--runs-dir", str(tmp_path / "runs"), timeout=60)
    one_line(p, "data.csv: row 4", "pipe.png is a FIFO (named pipe), not a regular file")
    assert seconds < 30, seconds  # no hang; the process imports torch first (the load itself: next test, < 5 s)
    assert not list((tmp_path / "runs").glob("*")), "a failed train left a run dir"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_row_is_refused_in_process_under_5_s(tmp_path):
    from edgetl.data.load import load_splits
    from edgetl.recipe import load_recipe

    recipe = load_recipe(_csv_recipe(tmp_path, _csv_dataset(tmp_path, fifo_row=True)))
    t0 = time.perf_counter()
    with pytest.raises(EdgetlError, match=r"row 4: column 'path': .*pipe\.png is a FIFO"):
        load_splits(recipe)
    assert time.perf_counter() - t0 < 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_non_regular_data_path_says_what_it_is(tmp_path, kind):
    from edgetl.data.load import load_splits
    from edgetl.recipe import load_recipe

    path = {"fifo": tmp_path / "fifo.csv", "device": Path("/dev/zero"), "directory": tmp_path / "dir.csv"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    want = {"fifo": "a FIFO (named pipe)", "device": "a character device", "directory": "a directory"}[kind]
    with pytest.raises(EdgetlError) as e:
        load_splits(load_recipe(_csv_recipe(tmp_path, path)))
    assert f"{path} is {want}, not a regular file" in str(e.value) and "not found" not in str(e.value)


@pytest.mark.parametrize("exchange", [True, False])
def test_swap_puts_the_new_bundle_in_place(tmp_path, monkeypatch, exchange):
    """Both swap paths: the atomic exchange, and two renames through <name>.prev where it is unsupported."""
    from edgetl.bundle import transaction

    if not exchange:
        monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)
    out, staging = tmp_path / "export", tmp_path / ".export.staging-1"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    staging.mkdir()
    (staging / "manifest.json").write_text("new")
    done: list = []
    transaction._swap(staging, out, done)
    assert done == [True] and (out / "manifest.json").read_text() == "new"
    left = {p.name for p in tmp_path.iterdir()} - {"export"}
    assert left == ({".export.staging-1"} if exchange and sys.platform.startswith("linux") else {"export.prev"})


def test_os_error_without_a_file_name_names_the_bundle(tmp_path):
    """A library's write fails deep inside (no filename): the line names where the bundle was being built."""
    from edgetl.bundle.transaction import os_error_line

    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            raise RuntimeError("serialization failed") from e
    except RuntimeError as wrapped:
        line = os_error_line(wrapped, "export failed", "kept", where=tmp_path)
    assert line.startswith(f"export failed: {tmp_path}: No space left on device (") and "MB free there" in line, line


def test_bench_report_on_a_full_disk_keeps_the_previous_report(tmp_path, monkeypatch):
    from edgetl.bench import report as report_mod
    from edgetl.bench.harness import write_report
    from edgetl.runtime import atomic

    (tmp_path / "bench.json").write_text('{"earlier": true}\n')
    monkeypatch.setattr(report_mod, "render_markdown", lambda r: "# report\n")
    monkeypatch.setattr(report_mod, "render_pareto_png", lambda r, p: None)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(StorageError) as e:
        write_report({"mode": "measured", "device": "cpu", "rows": []}, tmp_path)
    assert "No space left on device" in str(e.value) and "previous bench.json is unchanged" in str(e.value)
    assert (tmp_path / "bench.json").read_text() == '{"earlier": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]

"""The spine end to end on a tiny run: train -> export (verified FP32 + INT8) -> bench -> eval -> predict."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgetl.errors import EdgetlError

pytestmark = pytest.mark.slow


def test_run_dir_contents(trained_run):
    d = trained_run.dir
    for f in (
        "recipe.yaml",
        "splits.json",
        "metrics.jsonl",
        "run.json",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.safetensors",
    ):
        assert (d / f).is_file(), f
    rows = trained_run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[-1]["val"]) == {"digit", "parity"}
    info = trained_run.info()
    assert info["status"] == "completed" and info["best_score"] > 0.5  # digits: well above chance (0.1 / 0.5)


def test_runs_never_overwrite(tmp_path, tiny_recipe):
    from edgetl.runs.layout import new_run_dir

    a, b = new_run_dir("x", tmp_path), new_run_dir("x", tmp_path)
    assert (a.name, b.name) == ("x", "x-2")


def test_export_manifest_and_verification(exported_run):
    bundle = exported_run.export_dir
    m = json.loads((bundle / "manifest.json").read_text())
    assert set(m["artifacts"]) == {"fp32", "int8-ort"}
    v = m["artifacts"]["fp32"]["verification"]
    assert v["passed"] and all(d <= 1e-4 for d in v["max_abs_diff"].values())
    assert all(a == 1.0 for a in v["top1_agreement"].values())
    assert [t["output"] for t in m["tasks"]] == ["digit", "parity"]
    q = m["artifacts"]["int8-ort"]["quantization"]
    assert q["calibration"]["source"].startswith("train split") and q["calibration"]["size"] == 64
    import onnx

    model = onnx.load(str(bundle / "model.int8-ort.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 10
    assert [o.name for o in model.graph.output] == ["digit", "parity"]
    for name, digest in m["files"].items():
        from edgetl.runtime.manifest import sha256_file

        assert sha256_file(bundle / name) == digest


def test_int8_accuracy_close_to_fp32(exported_run):
    m = json.loads((exported_run.export_dir / "manifest.json").read_text())
    fp32, int8 = m["artifacts"]["fp32"]["accuracy"], m["artifacts"]["int8-ort"]["accuracy"]
    for t in fp32:
        assert abs(fp32[t] - int8[t]) <= 0.05, (t, fp32[t], int8[t])


def test_bench_measures_every_artifact(exported_run, tmp_path):
    from edgetl.bench.harness import bench

    r = bench(exported_run.dir, "cpu", budget_s=0.3, batch_sizes=(1, 4), out=tmp_path)
    arts = [row["artifact"] for row in r["rows"]]
    assert arts == ["pytorch", "fp32", "int8-ort"]
    for row in r["rows"]:
        assert row["status"] == "passed"
        lat = row["latency_ms"]
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert set(row["metrics"]) == {"digit", "parity"}
    # the same held-out split everywhere: ONNX FP32 matches the PyTorch checkpoint's accuracy
    by = {row["artifact"]: row for row in r["rows"]}
    assert by["fp32"]["metrics"]["digit"]["accuracy"] == pytest.approx(
        by["pytorch"]["metrics"]["digit"]["accuracy"], abs=1e-9
    )
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.md").is_file()


def test_bench_estimate_for_jetson(exported_run, tmp_path):
    from edgetl.bench.harness import bench

    r = bench(exported_run.dir, "jetson-orin-nano", budget_s=0.3, out=tmp_path)
    assert r["mode"] == "estimated"
    assert all(row["kind"] == "estimated" and row["latency_ms"]["p50_ms"] > 0 for row in r["rows"])
    with pytest.raises(EdgetlError, match="jetson-orin-nope"):
        bench(exported_run.dir, "jetson-orin-nope", out=tmp_path)


def test_eval_and_predict_cli(exported_run, tmp_path):
    from PIL import Image

    r = subprocess.run(
        [sys.executable, "-m", "edgetl", "eval", str(exported_run.dir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert len(res["tasks"]["digit"]["confusion_matrix"]) == 10
    img = tmp_path / "seven.png"
    from sklearn.datasets import load_digits

    d = load_digits()
    Image.fromarray((d.images[7] * 16).clip(0, 255).astype(np.uint8)).save(img)
    r = subprocess.run(
        [sys.executable, "-m", "edgetl", "predict", str(exported_run.export_dir), str(img), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)[0]
    assert out["digit"]["label"] in [str(i) for i in range(10)] and out["parity"]["label"] in ("even", "odd")

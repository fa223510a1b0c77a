"""Engines and execution providers in `edgetl bench`, `edgetl build`, and the bad-input lines around them.

No TensorRT or GPU here, so what is tested is edgetl's side: how the harness times a backend that has
`time_compute` (a FAKE TensorRT backend standing in for the real one, which stays unverified: see
docs/tensorrt.md), which batch sizes it sweeps, and the one-line errors for a missing engine, an engine
built for another GPU, TensorRT missing, a GPU provider that does not start, and an unknown device.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from test_remote_sshd import N_EXAMPLES, N_WRONG, make_bundle

from edgetl.bench.harness import bench
from edgetl.errors import EdgetlError
from edgetl.runtime.engine_manifest import EngineManifest
from edgetl.runtime.manifest import bundle_file_hashes, read_manifest, sha256_file, write_manifest

ACC = 1 - N_WRONG / N_EXAMPLES
ENGINE = "model.trt-fp32.engine"


def _add_engine(bundle, *, gpu="Orin", cc="8.7", trt="10.3.0", max_batch=4):
    """A trt-fp32 artifact: engine bytes + a valid engine manifest (as edgetl.compile writes them)."""
    (bundle / ENGINE).write_bytes(b"not a real plan: only the fake backend reads this bundle")
    EngineManifest(
        engine_file=ENGINE,
        engine_sha256=sha256_file(bundle / ENGINE),
        onnx_file="model.fp32.onnx",
        onnx_sha256=sha256_file(bundle / "model.fp32.onnx"),
        tensorrt_version=trt,
        gpu_name=gpu,
        compute_capability=cc,
        precision="fp32",
        strongly_typed=False,
        profiles={"input": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [max_batch, 3, 8, 8]}},
    ).write(bundle / ENGINE)
    data = dict(read_manifest(bundle).raw)
    data["artifacts"] = {
        **data["artifacts"],
        "trt-fp32": {
            "file": ENGINE,
            "format": "tensorrt",
            "precision": "fp32",
            "target": "tensorrt",
            "sha256": sha256_file(bundle / ENGINE),
            "size_bytes": (bundle / ENGINE).stat().st_size,
            "quantization": None,
        },
    }
    data["files"] = bundle_file_hashes(bundle)
    write_manifest(bundle, data)
    return bundle


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "export", second_artifact=False)


class FakeTensorRTBackend:
    """Stands in for edgetl.runtime.tensorrt_backend.TensorRTBackend: ORT underneath, fixed CUDA-event times."""

    name = "tensorrt"
    instances: list = []

    def __init__(self, engine_path, **kw):
        from edgetl.runtime.backends import OnnxRuntimeBackend
        from edgetl.runtime.engine_manifest import read_engine_manifest

        self.manifest = read_engine_manifest(engine_path)
        self._ort = OnnxRuntimeBackend(engine_path.parent / "model.fp32.onnx")
        self.input_names, self.output_names = list(self._ort.input_names), list(self._ort.output_names)
        self.batch_size = None
        self.time_calls: list[int] = []
        self.run_batches: set[int] = set()
        FakeTensorRTBackend.instances.append(self)

    def run(self, feeds):
        n = int(feeds["input"].shape[0])
        hi = self.manifest.profiles["input"]["max"][0]
        if n > hi:
            raise EdgetlError(f"input 'input' has batch {n}; the engine accepts 1 to {hi}")
        self.run_batches.add(n)
        return self._ort.run(feeds)

    def time_compute(self, feeds, iters=100, warmup=10):
        self.time_calls.append(iters)
        return np.full(iters, 0.25)


def test_engine_row_uses_cuda_event_compute_time_and_its_batch_range(bundle, tmp_path, monkeypatch):
    import edgetl.runtime.tensorrt_backend as trt_backend

    _add_engine(bundle, max_batch=4)
    FakeTensorRTBackend.instances.clear()
    monkeypatch.setattr(trt_backend, "TensorRTBackend", FakeTensorRTBackend)
    rep = bench(
        bundle,
        "cpu",
        artifacts=["fp32", "trt-fp32"],
        batch_sizes=(1, 2, 8),
        budget_s=0.05,
        providers=["CPUExecutionProvider"],
        out=tmp_path / "o",
    )  # providers must not reach the engine
    rows = {r["artifact"]: r for r in rep["rows"]}
    trt = rows["trt-fp32"]
    assert trt["status"] == "passed" and trt["backend"] == "tensorrt"
    assert trt["compute_timer"] == "cuda-events" and rows["fp32"]["compute_timer"] == "perf_counter"
    assert trt["compute_latency_ms"]["p50_ms"] == pytest.approx(0.25)
    fake = FakeTensorRTBackend.instances[-1]
    assert fake.time_calls == [10, 200]  # a 10-iteration probe, then budget 0.05 s / 0.25 ms
    assert trt["compute_latency_ms"]["iters"] == 200
    assert [p["batch"] for p in trt["throughput"]] == [1, 2] and trt["skipped_batches"] == [8]
    assert "1..4" in trt["note"] and 8 not in fake.run_batches
    assert [p["batch"] for p in rows["fp32"]["throughput"]] == [1, 2, 8]
    assert trt["metrics"]["color"]["accuracy"] == pytest.approx(ACC)
    assert "trt-fp32 (tensorrt)" in (tmp_path / "o" / "bench.md").read_text()


def test_missing_engine_for_a_precision_is_one_line(bundle):
    with pytest.raises(EdgetlError) as e:
        bench(bundle, "cpu", artifacts=["trt-int8"], budget_s=0.05)
    assert e.value.message == (
        f"--artifact trt-int8: {bundle} has no TensorRT int8 engine (it has no TensorRT "
        f"engines); build it on the device with `edgetl build {bundle} --int8`"
    )
    _add_engine(bundle)
    with pytest.raises(EdgetlError, match=r"no TensorRT fp16 engine \(it has trt-fp32\).*edgetl build .* --fp16`$"):
        bench(bundle, "cpu", artifacts=["trt-fp16"], budget_s=0.05)


def _run_cli(monkeypatch, capsys, *args):
    from edgetl.cli import main

    monkeypatch.setattr(sys, "argv", ["edgetl", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def test_engine_built_for_another_gpu_is_one_line(bundle, tmp_path, monkeypatch, capsys):
    import edgetl.runtime.tensorrt_backend as trt_backend

    _add_engine(bundle, gpu="Orin", cc="8.7", trt="10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))  # never used further
    monkeypatch.setattr(
        trt_backend, "detect_gpu", lambda device=0: {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    )
    rep = bench(bundle, "cpu", artifacts=["trt-fp32", "fp32"], batch_sizes=(1,), budget_s=0.05, out=tmp_path / "a")
    rows = {r["artifact"]: r for r in rep["rows"]}
    assert rows["fp32"]["status"] == "passed"  # one bad engine does not sink the ONNX rows
    assert rows["trt-fp32"]["status"].startswith(
        "load failed: model.trt-fp32.engine was built with TensorRT 10.3.0 for Orin (compute 8.7); this machine has "
        "TensorRT 10.3.0 on NVIDIA H100 80GB HBM3 (compute 9.0)"
    )
    assert "rebuild" in rows["trt-fp32"]["status"]
    code, out = _run_cli(
        monkeypatch,
        capsys,
        "bench",
        bundle,
        "--artifact",
        "trt-fp32",
        "--budget",
        "0.05",
        "--batch",
        "1",
        "--out",
        tmp_path / "b",
    )
    errors = [ln for ln in out.err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "built with TensorRT 10.3.0 for Orin (compute 8.7)" in errors[0]
    assert "Traceback" not in out.err


def test_engine_without_tensorrt_is_a_row_not_a_crash(bundle, tmp_path, monkeypatch):
    _add_engine(bundle)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails, as on a machine without it
    rep = bench(bundle, "cpu", batch_sizes=(1,), budget_s=0.05, out=tmp_path)
    rows = {r["artifact"]: r for r in rep["rows"]}
    assert rows["fp32"]["status"] == "passed"
    assert rows["trt-fp32"]["status"].startswith("load failed: TensorRT is not usable here")
    assert "pip install tensorrt" in rows["trt-fp32"]["status"]


def test_gpu_provider_that_does_not_start_is_reported_not_hidden(bundle, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider (plain `onnxruntime`)")
    probe = ort.InferenceSession(str(bundle / "model.fp32.onnx"), providers=["CUDAExecutionProvider"])
    if "CUDAExecutionProvider" in probe.get_providers():
        pytest.skip("the CUDA provider starts on this machine (a GPU is here)")
    rep = bench(bundle, "cpu", batch_sizes=(1,), budget_s=0.05, providers=["CUDAExecutionProvider"], out=tmp_path)
    row = rep["rows"][0]
    assert row["status"].startswith("load failed: execution provider CUDAExecutionProvider did not start")
    assert "fell back to CPUExecutionProvider" in row["status"] and "latency_ms" not in row


def test_build_without_tensorrt_names_what_to_install(bundle, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, out = _run_cli(monkeypatch, capsys, "build", bundle, "--fp16")
    assert code == 3
    assert out.err.strip().splitlines() == [out.err.strip()]  # one line
    assert out.err.startswith("error: edgetl build: TensorRT not installed") and "pip install tensorrt" in out.err
    before = json.loads((bundle / "manifest.json").read_text())
    assert "trt-fp32" not in before["artifacts"]  # nothing half-built


@pytest.mark.parametrize(
    "args,needle",
    [
        (["build", "/nonexistent/bundle"], "not a run or bundle directory: /nonexistent/bundle"),
        (["build", "{bundle}", "--max-batch", "0"], "--max-batch 0: must be >= 1"),
        (["bench", "/nonexistent/run", "--device", "jetson-nope"], "unknown device 'jetson-nope'; known devices: "),
    ],
)
def test_bad_input_lines(bundle, args, needle):
    r = subprocess.run(
        [sys.executable, "-m", "edgetl", *[a.format(bundle=bundle) for a in args]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and needle in r.stderr
    if "known devices" in needle:
        assert "jetson-orin-nano" in r.stderr and "cpu-x86-64" in r.stderr

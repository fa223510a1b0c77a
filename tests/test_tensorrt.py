"""TensorRT engines: pure logic everywhere, real builds only where TensorRT and a GPU exist.

Tests marked `tensorrt` need TensorRT >= 10 and an NVIDIA GPU; elsewhere they skip with the reason
"TensorRT not installed: engine build/run unverified on this machine". The other tests check what can
be checked without TensorRT: the engine-manifest compatibility rules, the INT8-without-Q/DQ refusal,
profile derivation, flag planning per TensorRT major version, and import hygiene.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import fake_engine
from onnx import TensorProto, helper, numpy_helper

from edgetl.compile.tensorrt import (
    DEFAULT_BATCH,
    EngineBuildConfig,
    build_engine,
    check_onnx_precision,
    derive_profiles,
    inspect_onnx,
    make_fp16_onnx,
    plan_build,
    trt_available,
)
from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.engine_manifest import (
    check_compatible,
    check_engine_file,
    parse_version,
    read_engine_manifest,
    sha256_file,
    sidecar_path,
)

REPO = Path(__file__).resolve().parents[1]
_TRT_OK, _TRT_REASON = trt_available()


@pytest.fixture(scope="session")
def needs_trt():
    """Skip without TensorRT + GPU; under EDGETL_REQUIRE_TENSORRT=1 (gpu_smoke.sh) fail instead of skipping."""
    if not _TRT_OK:
        if os.environ.get("EDGETL_REQUIRE_TENSORRT") == "1":
            pytest.fail(f"EDGETL_REQUIRE_TENSORRT=1 but {_TRT_REASON}")
        pytest.skip(_TRT_REASON)


# ------------------------------------------------------------------------------------ tiny ONNX files


def _save(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def image_onnx(path: Path, batch: int | str = "batch", size: tuple = (8, 8), qdq: bool = False) -> Path:
    """input [batch, 3, H, W] -> Conv 3->4 -> Relu -> GlobalAveragePool -> Flatten -> logits [batch, 4]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
    ]
    nodes = []
    x = "input"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        ]
        x = "dq"
    nodes += [
        helper.make_node("Conv", [x, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_image",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, *size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])],
        inits,
    )
    return _save(graph, path)


def text_onnx(path: Path, seq: int | str = "seq") -> Path:
    """input_ids, attention_mask [batch, seq] int64 -> embedding mean -> pooled [batch, 8]."""
    emb = numpy_helper.from_array(np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32), "emb")
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "axes1"], ["pooled"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", seq]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 8])],
        [
            emb,
            numpy_helper.from_array(np.array([2], np.int64), "axis"),
            numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        ],
    )
    return _save(graph, path)


# ------------------------------------------------------------------------------ import hygiene, probes


def test_modules_import_without_tensorrt_and_runtime_stays_torch_free():
    code = textwrap.dedent("""
        import sys
        import edgetl.runtime.tensorrt_backend, edgetl.runtime.engine_manifest
        assert "torch" not in sys.modules, "runtime pulled torch"
        assert "tensorrt" not in sys.modules, "runtime imported tensorrt at import time"
        import edgetl.compile.tensorrt
        assert "tensorrt" not in sys.modules, "compile imported tensorrt at import time"
        assert "torch" not in sys.modules and "onnx" not in sys.modules, "compile imports heavy modules eagerly"
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_trt_available_explains_missing_tensorrt():
    ok, reason = trt_available()
    assert not ok
    assert reason.startswith("TensorRT not installed: engine build/run unverified on this machine")
    assert "pip install tensorrt" in reason and "\n" not in reason


def test_cuda_python_errors_are_readable_without_a_gpu():
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    from edgetl.runtime.engine_manifest import gpu_from_cuda_python
    from edgetl.runtime.tensorrt_backend import _CudaPython

    if gpu_from_cuda_python() is not None:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cudaSetDevice failed: "):
        _CudaPython(0)


# -------------------------------------------------------------------------- compatibility (pure rules)

BUILT = {
    "tensorrt_version": "10.3.0",
    "gpu_name": "Orin",
    "compute_capability": "8.7",
    "hardware_compatibility": "none",
    "version_compatible": False,
}
ORIN = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}
H100 = {"tensorrt_version": "10.16.0", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


def test_compatible_same_version_and_gpu():
    check_compatible(BUILT, ORIN, engine_name="model.int8.engine")
    check_compatible(BUILT, {**ORIN, "gpu_name": "  orin "})  # spacing/case of the name do not matter


def test_refuses_other_tensorrt_and_gpu_with_one_line():
    with pytest.raises(EdgetlError) as e:
        check_compatible(BUILT, H100, engine_name="model.int8.engine")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(
        "model.int8.engine was built with TensorRT 10.3.0 for Orin (compute 8.7); "
        "this machine has TensorRT 10.16.0 on NVIDIA H100 80GB HBM3 (compute 9.0)"
    )
    assert "edgetl export <run> --engine" in msg


@pytest.mark.parametrize("local_version", ["10.3.1", "10.4.0", "10.2.0", "11.0.0"])
def test_refuses_other_tensorrt_version_on_same_gpu(local_version):
    with pytest.raises(EdgetlError, match="only on the TensorRT version that built them"):
        check_compatible(BUILT, {**ORIN, "tensorrt_version": local_version})


def test_build_numbers_compare_only_when_both_sides_have_one():
    check_compatible({**BUILT, "tensorrt_version": "10.3.0.26"}, ORIN)  # JetPack reports 10.3.0
    check_compatible({**BUILT, "tensorrt_version": "10.3.0.26"}, {**ORIN, "tensorrt_version": "10.3.0.26"})
    with pytest.raises(EdgetlError):
        check_compatible({**BUILT, "tensorrt_version": "10.3.0.26"}, {**ORIN, "tensorrt_version": "10.3.0.30"})


def test_refuses_other_compute_capability():
    with pytest.raises(EdgetlError, match="tied to the GPU architecture"):
        check_compatible(BUILT, {**ORIN, "compute_capability": "8.6", "gpu_name": "NVIDIA A10"})


def test_other_gpu_model_same_cc_refused_unless_not_strict():
    built = {**BUILT, "gpu_name": "NVIDIA GeForce RTX 3080", "compute_capability": "8.6"}
    local = {**ORIN, "gpu_name": "NVIDIA A10", "compute_capability": "8.6"}
    with pytest.raises(EdgetlError, match="another GPU model"):
        check_compatible(built, local)
    check_compatible(built, local, strict_gpu_model=False)


def test_version_compatible_engine_loads_on_later_minor_of_same_major():
    vc = {**BUILT, "version_compatible": True}
    check_compatible(vc, {**ORIN, "tensorrt_version": "10.16.1"})
    check_compatible(vc, {**ORIN, "tensorrt_version": "10.3.0"})
    with pytest.raises(EdgetlError, match="at or above 10.3.0"):
        check_compatible(vc, {**ORIN, "tensorrt_version": "10.2.0"})
    with pytest.raises(EdgetlError, match="only on TensorRT 10.x"):
        check_compatible(vc, {**ORIN, "tensorrt_version": "11.0.0"})


def test_hardware_compatible_levels():
    amp = {**BUILT, "hardware_compatibility": "ampere_plus", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}
    check_compatible(amp, H100 | {"tensorrt_version": "10.3.0"})
    with pytest.raises(EdgetlError, match="compute 8.0 or newer"):
        check_compatible(amp, {"tensorrt_version": "10.3.0", "gpu_name": "Tesla T4", "compute_capability": "7.5"})
    same = {
        **BUILT,
        "hardware_compatibility": "same_cc",
        "gpu_name": "NVIDIA GeForce RTX 3080",
        "compute_capability": "8.6",
    }
    check_compatible(same, {**ORIN, "gpu_name": "NVIDIA A10", "compute_capability": "8.6"})
    with pytest.raises(EdgetlError, match="needs compute 8.6"):
        check_compatible(same, ORIN)


def test_parse_version():
    assert parse_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_version("11.1.0") == (11, 1, 0)
    assert parse_version("10.16.0b1") == (10, 16)


def _fake_engine(tmp_path: Path, **manifest_fields) -> Path:
    return fake_engine(tmp_path / "model.fp16.engine", **manifest_fields)


def test_engine_file_checks_sidecar_presence_hash_and_fit(tmp_path):
    engine = _fake_engine(tmp_path)
    assert sidecar_path(engine).name == "model.fp16.engine.json"
    assert check_engine_file(engine, ORIN).precision == "fp16"
    with pytest.raises(EdgetlError, match="TensorRT 10.3.0 for Orin"):
        check_engine_file(engine, H100)
    engine.write_bytes(b"rebuilt by someone else")
    with pytest.raises(EdgetlError, match="does not describe model.fp16.engine"):
        check_engine_file(engine, ORIN)
    sidecar_path(engine).unlink()
    with pytest.raises(EdgetlError, match="no engine manifest"):
        check_engine_file(engine, ORIN)


def test_manifest_schema_is_checked(tmp_path):
    engine = _fake_engine(tmp_path)
    side = sidecar_path(engine)
    data = json.loads(side.read_text())
    side.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(EdgetlError, match="upgrade edgetl"):
        read_engine_manifest(engine)
    del data["gpu_name"]
    side.write_text(json.dumps(data))
    with pytest.raises(EdgetlError, match="lacks gpu_name"):
        read_engine_manifest(engine)


def test_backend_refuses_missing_sidecar_before_tensorrt(tmp_path):
    from edgetl.runtime.tensorrt_backend import TensorRTBackend

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(EdgetlError, match="no engine manifest") as e:
        TensorRTBackend(engine)
    assert not isinstance(e.value, UnverifiedError)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_backend_without_tensorrt_is_unverified_not_a_crash(tmp_path):
    from edgetl.runtime.tensorrt_backend import TensorRTBackend

    with pytest.raises(UnverifiedError, match="pip install tensorrt"):
        TensorRTBackend(_fake_engine(tmp_path))


# ------------------------------------------------------------------------- ONNX facts, precision plans


def test_int8_without_qdq_is_refused_before_tensorrt(tmp_path):
    onnx_path = image_onnx(tmp_path / "model.fp32.onnx")
    with pytest.raises(EdgetlError) as e:
        build_engine(onnx_path, tmp_path / "model.int8.engine", EngineBuildConfig(precision="int8"))
    msg = str(e.value)
    assert "model.fp32.onnx has no QuantizeLinear nodes" in msg and "modelopt Q/DQ artifact first" in msg
    assert not isinstance(e.value, UnverifiedError)
    assert not (tmp_path / "model.int8.engine").exists()


def test_inspect_onnx_sees_qdq_and_fp16(tmp_path):
    plain = inspect_onnx(image_onnx(tmp_path / "a.onnx"))
    assert plain.inputs == (("input", ("batch", 3, 8, 8)),) and not plain.has_qdq and not plain.has_fp16
    qdq = inspect_onnx(image_onnx(tmp_path / "b.onnx", qdq=True))
    assert qdq.num_quantize == 1 and qdq.has_qdq


def test_precision_must_match_the_onnx(tmp_path):
    qdq = inspect_onnx(image_onnx(tmp_path / "q.onnx", qdq=True))
    with pytest.raises(EdgetlError, match="ask precision='int8'"):
        check_onnx_precision(qdq, EngineBuildConfig(precision="fp16"))
    check_onnx_precision(qdq, EngineBuildConfig(precision="int8"))


def test_plans_per_tensorrt_major(tmp_path):
    fp32 = inspect_onnx(image_onnx(tmp_path / "f.onnx"))
    qdq = inspect_onnx(image_onnx(tmp_path / "q.onnx", qdq=True))
    fp16 = type(fp32)(name="m.fp16.onnx", inputs=fp32.inputs, num_quantize=0, has_fp16=True)

    p = plan_build(fp32, EngineBuildConfig(precision="fp16"), 10)
    assert (p.strongly_typed, p.network_flags, p.builder_flags) == (False, (), ("FP16",))
    p = plan_build(qdq, EngineBuildConfig(precision="int8"), 10)
    assert p.builder_flags == ("INT8", "FP16")
    p = plan_build(fp16, EngineBuildConfig(precision="fp16", strongly_typed=True), 10)
    assert (p.strongly_typed, p.network_flags, p.builder_flags) == (True, ("STRONGLY_TYPED",), ())
    assert plan_build(fp32, EngineBuildConfig(), 10).builder_flags == ()

    for onnx_summary, precision in ((fp16, "fp16"), (qdq, "int8"), (fp32, "fp32")):
        p = plan_build(onnx_summary, EngineBuildConfig(precision=precision), 11)
        assert (p.strongly_typed, p.network_flags, p.builder_flags) == (True, (), ())
    with pytest.raises(EdgetlError, match="make_fp16_onnx"):
        plan_build(fp32, EngineBuildConfig(precision="fp16"), 11)
    with pytest.raises(EdgetlError, match="impossible on TensorRT 11"):
        plan_build(fp16, EngineBuildConfig(precision="fp16", strongly_typed=False), 11)
    with pytest.raises(UnverifiedError, match="older than 10"):
        plan_build(fp32, EngineBuildConfig(), 8)

    p = plan_build(qdq, EngineBuildConfig(precision="int8", dla_core=0, version_compatible=True), 10)
    assert p.builder_flags == ("INT8", "FP16", "GPU_FALLBACK", "VERSION_COMPATIBLE")


def test_config_validation():
    with pytest.raises(EdgetlError, match="precision='bf16'"):
        EngineBuildConfig(precision="bf16")
    with pytest.raises(EdgetlError, match="hardware_compat"):
        EngineBuildConfig(hardware_compat="all")
    with pytest.raises(EdgetlError, match="DLA runs fp16 or int8"):
        EngineBuildConfig(dla_core=0)
    with pytest.raises(EdgetlError, match="max_batch=0"):
        EngineBuildConfig(max_batch=0)


# ------------------------------------------------------------------------------------------- profiles


def test_image_profile_dynamic_batch(tmp_path):
    s = inspect_onnx(image_onnx(tmp_path / "m.onnx"))
    assert derive_profiles(s.inputs, EngineBuildConfig()) == {
        "input": {
            "min": [DEFAULT_BATCH[0], 3, 8, 8],
            "opt": [DEFAULT_BATCH[1], 3, 8, 8],
            "max": [DEFAULT_BATCH[2], 3, 8, 8],
        }
    }
    got = derive_profiles(s.inputs, EngineBuildConfig(min_batch=2, opt_batch=4, max_batch=16))
    assert got["input"] == {"min": [2, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [16, 3, 8, 8]}
    with pytest.raises(EdgetlError, match="1 <= min <= opt <= max"):
        derive_profiles(s.inputs, EngineBuildConfig(min_batch=4, max_batch=2))


def test_image_profile_fixed_batch(tmp_path):
    s = inspect_onnx(image_onnx(tmp_path / "m.onnx", batch=1))
    assert derive_profiles(s.inputs, EngineBuildConfig())["input"]["max"] == [1, 3, 8, 8]
    with pytest.raises(EdgetlError, match="max_batch=8 but input 'input' of m.onnx has a fixed batch of 1"):
        derive_profiles(s.inputs, EngineBuildConfig(max_batch=8), "m.onnx")


def test_dynamic_image_size_is_refused(tmp_path):
    s = inspect_onnx(image_onnx(tmp_path / "m.onnx", size=("h", "w")))
    with pytest.raises(EdgetlError, match="dynamic axis 2"):
        derive_profiles(s.inputs, EngineBuildConfig())


def test_text_profile_batch_and_sequence(tmp_path):
    s = inspect_onnx(text_onnx(tmp_path / "t.onnx"))
    got = derive_profiles(s.inputs, EngineBuildConfig(max_batch=4, max_seq_len=128))
    assert got == {name: {"min": [1, 1], "opt": [1, 128], "max": [4, 128]} for name in ("input_ids", "attention_mask")}
    got = derive_profiles(s.inputs, EngineBuildConfig(min_seq_len=16, opt_seq_len=64, max_seq_len=128))
    assert got["input_ids"] == {"min": [1, 16], "opt": [1, 64], "max": [8, 128]}
    with pytest.raises(EdgetlError, match="dynamic sequence axis: set max_seq_len"):
        derive_profiles(s.inputs, EngineBuildConfig())
    # TensorRT spells dynamic dims -1; the same rules apply to the parsed network's shapes.
    assert derive_profiles([("input_ids", [-1, 32])], EngineBuildConfig())["input_ids"]["max"] == [8, 32]


def test_make_fp16_onnx_keeps_float32_io(tmp_path):
    pytest.importorskip("modelopt.onnx.autocast", reason="modelopt[onnx] not installed", exc_type=ImportError)
    src = image_onnx(tmp_path / "model.fp32.onnx")
    out = make_fp16_onnx(src, tmp_path / "model.fp16.onnx")
    s = inspect_onnx(out)
    assert s.has_fp16 and not s.has_qdq
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    check_onnx_precision(s, EngineBuildConfig(precision="fp16"))
    with pytest.raises(EdgetlError, match="holds FP16 tensors"):
        check_onnx_precision(s, EngineBuildConfig(precision="fp32"))


# =========================================================================== on a GPU with TensorRT
# Everything below builds and runs real engines. It has never run on the development machine.

TOL = {"fp32": 1e-2, "fp16": 3e-2, "int8": 0.05}  # relative L2 error vs ONNX Runtime FP32 (TF32 is on for fp32)

_TINY_CNN = """
import inspect, sys, torch
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c = torch.nn.Conv2d
        self.f = torch.nn.Sequential(c(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                     c(16, 32, 3, padding=1, stride=2), torch.nn.ReLU(),
                                     c(32, 32, 3, padding=1), torch.nn.ReLU(),
                                     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    def forward(self, x):
        return self.f(x)
torch.manual_seed(0)
legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
torch.onnx.export(Tiny().eval(), (torch.randn(1, 3, 32, 32),), sys.argv[1], input_names=["input"],
                  output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                  opset_version=17, **legacy)
"""

_QUANTIZE = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
data = np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)
# fp32 high precision keeps the Q/DQ model runnable on ONNX Runtime CPU for the comparison below.
quantize(sys.argv[1], quantize_mode="int8", calibration_data=data, calibration_method="max",
         high_precision_dtype="fp32", output_path=sys.argv[2], log_level="WARNING")
"""


@pytest.fixture(scope="module")
def cnn(needs_trt, tmp_path_factory):
    """The tiny CNN as FP32, FP16 (AutoCast) and modelopt INT8 Q/DQ ONNX (each tool in its own process)."""
    d = tmp_path_factory.mktemp("trt")
    fp32 = d / "model.fp32.onnx"
    subprocess.run([sys.executable, "-c", _TINY_CNN, str(fp32)], check=True, timeout=300)
    int8 = d / "model.int8-modelopt.onnx"
    subprocess.run([sys.executable, "-c", _QUANTIZE, str(fp32), str(int8)], check=True, timeout=600)
    fp16 = make_fp16_onnx(fp32, d / "model.fp16.onnx")
    return {"dir": d, "fp32": fp32, "fp16": fp16, "int8": int8}


def _ort(onnx_path: Path, feeds: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b), 1e-12))


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(needs_trt, cnn, precision):
    from edgetl.compile.tensorrt import trt_major
    from edgetl.runtime.tensorrt_backend import TensorRTBackend

    # TensorRT 11 takes FP16 from the ONNX; TensorRT 10 builds it from FP32 with the FP16 flag.
    src = (
        cnn["int8"]
        if precision == "int8"
        else (cnn["fp16"] if precision == "fp16" and trt_major() >= 11 else cnn["fp32"])
    )
    engine = cnn["dir"] / f"model.{precision}.engine"
    manifest = build_engine(src, engine, EngineBuildConfig(precision=precision, max_batch=4))
    assert engine.is_file() and sidecar_path(engine).is_file()
    assert manifest.engine_sha256 == sha256_file(engine) and manifest.precision == precision
    assert manifest.profiles["input"]["max"] == [4, 3, 32, 32]

    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ref = _ort(cnn["fp32"], {"input": x})["logits"]
    with TensorRTBackend(engine) as backend:
        assert backend.input_names == ["input"] and backend.output_names == ["logits"]
        assert backend.batch_size is None  # a 1..4 batch range, not one size
        got = backend.run({"input": x})["logits"]
        assert got.shape == ref.shape == (3, 10)
        assert _rel(got, ref) < TOL[precision], (precision, _rel(got, ref))
        if precision == "int8":  # the same Q/DQ graph run by ONNX Runtime (fake-quantized)
            assert _rel(got, _ort(cnn["int8"], {"input": x})["logits"]) < TOL["int8"]
        one = backend.run({"input": x[:1]})["logits"]  # a different batch inside the profile
        assert one.shape == (1, 10)
        with pytest.raises(EdgetlError, match="accepts"):
            backend.run({"input": np.zeros((5, 3, 32, 32), np.float32)})
        times = backend.time_compute({"input": x}, iters=20, warmup=5)
        assert times.shape == (20,) and np.all(times > 0)


@pytest.mark.tensorrt
def test_timing_cache_is_saved_and_reused(needs_trt, cnn):
    cache = cnn["dir"] / "timing.cache"
    first = build_engine(cnn["fp32"], cnn["dir"] / "a.engine", EngineBuildConfig(timing_cache=cache))
    assert cache.is_file() and cache.stat().st_size > 0
    assert first.timing_cache == {"file": str(cache), "loaded": False, "saved": True}
    second = build_engine(cnn["fp32"], cnn["dir"] / "b.engine", EngineBuildConfig(timing_cache=cache))
    assert second.timing_cache["loaded"] is True
    print(f"build seconds without/with timing cache: {first.build_seconds} / {second.build_seconds}")


@pytest.mark.tensorrt
def test_mismatched_engine_is_refused_before_deserializing(needs_trt, cnn):
    from edgetl.runtime.tensorrt_backend import TensorRTBackend

    engine = cnn["dir"] / "mismatch.engine"
    build_engine(cnn["fp32"], engine, EngineBuildConfig())
    TensorRTBackend(engine).close()
    side = sidecar_path(engine)
    data = json.loads(side.read_text())
    side.write_text(json.dumps({**data, "tensorrt_version": "9.0.0"}))
    with pytest.raises(EdgetlError, match="was built with TensorRT 9.0.0"):
        TensorRTBackend(engine)
    side.write_text(json.dumps({**data, "gpu_name": "Imaginary GPU", "compute_capability": "1.0"}))
    with pytest.raises(EdgetlError, match=r"for Imaginary GPU \(compute 1.0\)"):
        TensorRTBackend(engine)


@pytest.mark.tensorrt
def test_text_engine_dynamic_sequence(needs_trt, tmp_path):
    from edgetl.runtime.tensorrt_backend import TensorRTBackend

    src = text_onnx(tmp_path / "text.onnx")
    engine = tmp_path / "text.engine"
    manifest = build_engine(src, engine, EngineBuildConfig(max_batch=2, max_seq_len=16))
    assert manifest.profiles["input_ids"] == {"min": [1, 1], "opt": [1, 16], "max": [2, 16]}
    with TensorRTBackend(engine) as backend:
        for seq in (5, 16):
            ids = np.random.default_rng(seq).integers(0, 50, (2, seq), dtype=np.int64)
            mask = np.ones((2, seq), np.int64)
            mask[:, seq // 2 :] = 0
            ref = _ort(src, {"input_ids": ids, "attention_mask": mask})["pooled"]
            got = backend.run({"input_ids": ids, "attention_mask": mask})["pooled"]
            assert _rel(got, ref) < TOL["fp32"]

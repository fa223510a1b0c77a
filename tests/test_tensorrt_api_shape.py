"""API-SHAPE TESTS, NOT VERIFICATION: the build/load code against a fake `tensorrt` module.

TensorRT cannot be installed on the development machine, so these tests inject a small stand-in
module into `sys.modules["tensorrt"]` that records calls. The fake mirrors the Python binding surface
that NVIDIA's sources show per version (pyCore.cpp / pyOnnx.cpp at v10.x and v11.x): TensorRT 10 has
`BuilderFlag.FP16/INT8` and `NetworkDefinitionCreationFlag.EXPLICIT_BATCH`; TensorRT 11 has neither;
`HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY` exists from 10.9. Touching a member a version
lacks fails here the way it would fail for real (AttributeError).

What this proves: which calls the code makes per version, in what order, and what lands in the engine
manifest. What it cannot prove: that TensorRT accepts them. That is `tests/test_tensorrt.py -m tensorrt`
on a GPU (benchmarks/gpu_smoke.sh).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import image_input, onnx_artifact
from onnx import TensorProto, helper, numpy_helper

import edgetl.compile.tensorrt as ct
import edgetl.runtime.tensorrt_backend as tb
from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.engine_manifest import sha256_file, sidecar_path

GPU = {"gpu_name": "Fake GPU", "compute_capability": "8.7", "source": "test"}


# ------------------------------------------------------------------------------------------ the fake


class _Member:
    def __init__(self, name: str, value: int):
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Member) and (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def __repr__(self) -> str:
        return self.name


def _enum(name: str, members: list[str]) -> type:
    return type(name, (), {m: _Member(m, i) for i, m in enumerate(members)})


def make_fake_trt(
    version: str,
    *,
    dla_cores: int = 0,
    non_dla_layers: tuple = (),
    parse_errors: tuple = (),
    build_fails: bool = False,
    cache_accepts: bool = True,
    engine=None,
) -> types.ModuleType:
    major, minor = (int(p) for p in version.split(".")[:2])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list[tuple] = []
    trt.calls = calls

    flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]
    if major == 10:
        flags = ["FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"] + flags
    trt.BuilderFlag = _enum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = _enum(
        "NetworkDefinitionCreationFlag",
        ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if major == 10 else ["STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS"],
    )
    trt.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    trt.DeviceType = _enum("DeviceType", ["GPU", "DLA"])
    trt.HardwareCompatibilityLevel = _enum(
        "HardwareCompatibilityLevel",
        ["NONE", "AMPERE_PLUS"] + (["SAME_COMPUTE_CAPABILITY"] if (major, minor) >= (10, 9) else []),
    )
    trt.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "INT64"])
    trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    _dt = {
        TensorProto.FLOAT: trt.DataType.FLOAT,
        TensorProto.INT64: trt.DataType.INT64,
        TensorProto.FLOAT16: trt.DataType.HALF,
    }

    class ILogger:
        Severity = _enum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])

        def __init__(self):
            calls.append(("ILogger.__init__",))

    trt.ILogger = ILogger

    class Tensor:
        def __init__(self, vi):
            self.name = vi.name
            self.shape = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
            self.dtype = _dt[vi.type.tensor_type.elem_type]

    class Layer:
        def __init__(self, name):
            self.name = name

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.outputs, self.layers = flags, [], [], []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, text):
            self.text = text

        def desc(self):
            return self.text

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, list(parse_errors)

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return ParserError(self.errors[i])

        def parse_from_file(self, path):
            calls.append(("parse_from_file", Path(path).name))
            g = onnx.load(path).graph
            inits = {t.name for t in g.initializer}
            self.network.inputs = [Tensor(vi) for vi in g.input if vi.name not in inits]
            self.network.outputs = [Tensor(vi) for vi in g.output]
            self.network.layers = [Layer(n.name or f"{n.op_type}_{i}") for i, n in enumerate(g.node)]
            return not self.errors

    class TimingCache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+timings"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("profile.set_shape", name, list(lo), list(opt), list(hi)))

    class Config:
        def __init__(self):
            self.cache = None
            self.default_device_type = trt.DeviceType.GPU
            self.DLA_core = -1
            self.hardware_compatibility_level = trt.HardwareCompatibilityLevel.NONE

        def set_flag(self, flag):
            assert isinstance(flag, _Member), flag
            calls.append(("set_flag", flag.name))

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool.name, size))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))
            return 0

        def create_timing_cache(self, blob):
            calls.append(("create_timing_cache", bytes(blob)))
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", ignore_mismatch))
            self.cache = cache
            return cache_accepts

        def get_timing_cache(self):
            return self.cache

        def can_run_on_DLA(self, layer):
            return layer.name not in non_dla_layers

        if major == 10:  # removed in 11; must never be used by edgetl anyway

            @property
            def int8_calibrator(self):
                raise AssertionError("edgetl must not use INT8 calibrators")

            @int8_calibrator.setter
            def int8_calibrator(self, value):
                raise AssertionError("edgetl must not use INT8 calibrators")

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.num_DLA_cores = dla_cores

        def create_network(self, flags=0):
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(
                (
                    "build_serialized_network",
                    config.default_device_type.name,
                    config.DLA_core,
                    config.hardware_compatibility_level.name,
                )
            )
            if build_fails:
                self.logger.log(ILogger.Severity.WARNING, "fake: some warning")
                self.logger.log(ILogger.Severity.ERROR, "fake: no tactic\nfor layer conv")
                return None
            return b"ENGINE " + version.encode()

    class Runtime:
        def __init__(self, logger):
            self.logger = logger
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            calls.append(("deserialize_cuda_engine", len(data), self.engine_host_code_allowed))
            if engine is not None:
                return engine(trt)
            self.logger.log(ILogger.Severity.ERROR, "fake: Serialization assertion failed")
            return None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake(monkeypatch):
    """Install a fake TensorRT of a given version; GPU probes answer a fake GPU."""

    def install(version: str, **kw) -> types.ModuleType:
        trt = make_fake_trt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(tb, "_LOGGERS", {})
        monkeypatch.setattr(ct, "detect_gpu_for_build", lambda device=0: dict(GPU))
        monkeypatch.setattr(tb, "detect_gpu", lambda device=0: dict(GPU))
        monkeypatch.setattr(tb, "_cuda_provider", lambda device: FakeCuda())
        return trt

    return install


# ------------------------------------------------------------------------------------------ ONNX files


def _onnx(path: Path, *, qdq: bool = False, fp16: bool = False) -> Path:
    w = np.ones((4, 3, 3, 3), np.float16 if fp16 else np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    nodes, x = [], "input"
    if fp16:
        nodes.append(helper.make_node("Cast", ["input"], ["x16"], name="cast_in", to=TensorProto.FLOAT16))
        x = "x16"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [x, "s", "z"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
        ]
        x = "dq"
    nodes += [
        helper.make_node("Conv", [x, "w"], ["c"], name="conv"),
        helper.make_node("Softmax", ["c"], ["y"], name="softmax"),
    ]
    if fp16:
        nodes.append(helper.make_node("Cast", ["y"], ["logits"], name="cast_out", to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["y"], ["logits"], name="out"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 6, 6])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _calls(trt, name):
    return [c[1:] for c in trt.calls if c[0] == name]


# ----------------------------------------------------------------------------------------- TensorRT 10


def test_trt10_fp16_sets_the_fp16_builder_flag(fake, tmp_path):
    trt = fake("10.3.0")
    engine = tmp_path / "model.fp16.engine"
    m = ct.build_engine(
        _onnx(tmp_path / "model.fp32.onnx"),
        engine,
        ct.EngineBuildConfig(precision="fp16", max_batch=4, workspace_bytes=1 << 30),
    )
    assert _calls(trt, "create_network") == [(0,)]
    assert _calls(trt, "set_flag") == [("FP16",)]
    assert _calls(trt, "set_memory_pool_limit") == [("WORKSPACE", 1 << 30)]
    assert _calls(trt, "profile.set_shape") == [("input", [1, 3, 8, 8], [1, 3, 8, 8], [4, 3, 8, 8])]
    assert _calls(trt, "parse_from_file") == [("model.fp32.onnx",)]
    assert engine.read_bytes() == b"ENGINE 10.3.0"
    side = json.loads(sidecar_path(engine).read_text())
    assert side["engine_sha256"] == sha256_file(engine) == m.engine_sha256
    assert side["onnx_sha256"] == sha256_file(tmp_path / "model.fp32.onnx")
    assert (side["tensorrt_version"], side["gpu_name"], side["compute_capability"]) == ("10.3.0", "Fake GPU", "8.7")
    assert side["precision"] == "fp16" and side["strongly_typed"] is False and side["builder_flags"] == ["FP16"]
    assert side["io"]["inputs"] == [{"name": "input", "dtype": "FLOAT", "shape": [-1, 3, 8, 8]}]
    assert side["created_utc"].endswith("Z") and side["build_seconds"] >= 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_trt10_int8_uses_qdq_with_int8_and_fp16_flags_and_no_calibrator(fake, tmp_path):
    trt = fake("10.3.0")
    ct.build_engine(_onnx(tmp_path / "m.onnx", qdq=True), tmp_path / "m.engine", ct.EngineBuildConfig(precision="int8"))
    assert _calls(trt, "set_flag") == [("INT8",), ("FP16",)]


def test_trt10_strongly_typed_sets_network_flag_and_no_precision_flags(fake, tmp_path):
    trt = fake("10.8.0")
    m = ct.build_engine(
        _onnx(tmp_path / "m.onnx", fp16=True),
        tmp_path / "m.engine",
        ct.EngineBuildConfig(precision="fp16", strongly_typed=True),
    )
    assert _calls(trt, "create_network") == [(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),)]
    assert _calls(trt, "set_flag") == []
    assert m.strongly_typed is True


# ----------------------------------------------------------------------------------------- TensorRT 11


def test_trt11_is_strongly_typed_with_no_precision_flags(fake, tmp_path):
    for precision, kw in (("fp16", {"fp16": True}), ("int8", {"qdq": True}), ("fp32", {})):
        trt = fake("11.1.0")
        m = ct.build_engine(
            _onnx(tmp_path / f"{precision}.onnx", **kw),
            tmp_path / f"{precision}.engine",
            ct.EngineBuildConfig(precision=precision),
        )
        assert _calls(trt, "create_network") == [(0,)]
        assert _calls(trt, "set_flag") == []
        assert m.strongly_typed is True and m.builder_flags == []


def test_trt11_fp16_from_fp32_onnx_asks_for_autocast(fake, tmp_path):
    trt = fake("11.0.0")
    with pytest.raises(EdgetlError, match="make_fp16_onnx"):
        ct.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", ct.EngineBuildConfig(precision="fp16"))
    assert _calls(trt, "create_network") == []  # refused before building anything


def test_int8_without_qdq_never_reaches_tensorrt(fake, tmp_path):
    trt = fake("10.3.0")
    with pytest.raises(EdgetlError, match="no QuantizeLinear"):
        ct.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", ct.EngineBuildConfig(precision="int8"))
    assert trt.calls == []


# ------------------------------------------------------------------------------------- errors and extras


def test_parser_errors_become_one_line(fake, tmp_path):
    fake("10.3.0", parse_errors=("In node 3 (importConv): UNSUPPORTED_NODE\nweights", "second problem"))
    with pytest.raises(EdgetlError) as e:
        ct.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")
    assert "\n" not in str(e.value)
    assert "could not parse m.onnx: In node 3 (importConv): UNSUPPORTED_NODE weights; second problem" in str(e.value)


def test_failed_build_reports_logger_errors(fake, tmp_path):
    fake("10.3.0", build_fails=True)
    with pytest.raises(EdgetlError, match="failed to build an engine from m.onnx: fake: no tactic for layer conv"):
        ct.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists() and not sidecar_path(tmp_path / "m.engine").exists()


def test_timing_cache_created_then_loaded(fake, tmp_path):
    cache = tmp_path / "timing.cache"
    trt = fake("10.3.0")
    first = ct.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "a.engine", ct.EngineBuildConfig(timing_cache=cache))
    assert _calls(trt, "create_timing_cache") == [(b"",)] and _calls(trt, "set_timing_cache") == [(False,)]
    assert cache.read_bytes() == b"+timings" and first.timing_cache == {
        "file": str(cache),
        "loaded": False,
        "saved": True,
    }
    trt = fake("10.3.0")
    second = ct.build_engine(tmp_path / "m.onnx", tmp_path / "b.engine", ct.EngineBuildConfig(timing_cache=cache))
    assert _calls(trt, "create_timing_cache") == [(b"+timings",)]
    assert second.timing_cache["loaded"] is True


def test_rejected_timing_cache_is_an_error(fake, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"from another gpu")
    fake("10.3.0", cache_accepts=False)
    with pytest.raises(EdgetlError, match="made for another GPU"):
        ct.build_engine(_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", ct.EngineBuildConfig(timing_cache=cache))


def test_dla_with_gpu_fallback_records_fallback_layers(fake, tmp_path):
    trt = fake("10.3.0", dla_cores=2, non_dla_layers=("softmax",))
    m = ct.build_engine(
        _onnx(tmp_path / "m.onnx", qdq=True), tmp_path / "m.engine", ct.EngineBuildConfig(precision="int8", dla_core=1)
    )
    assert _calls(trt, "set_flag") == [("INT8",), ("FP16",), ("GPU_FALLBACK",)]
    assert _calls(trt, "build_serialized_network") == [("DLA", 1, "NONE")]
    assert m.dla_core == 1 and m.gpu_fallback is True and m.dla_fallback_layers == ["softmax"]


def test_dla_refusals(fake, tmp_path):
    fake("10.3.0", dla_cores=0)
    with pytest.raises(UnverifiedError, match="no DLA"):
        ct.build_engine(
            _onnx(tmp_path / "m.onnx", qdq=True),
            tmp_path / "m.engine",
            ct.EngineBuildConfig(precision="int8", dla_core=0),
        )
    fake("10.3.0", dla_cores=2, non_dla_layers=("softmax",))
    with pytest.raises(EdgetlError, match="cannot run on the DLA"):
        ct.build_engine(
            tmp_path / "m.onnx",
            tmp_path / "m.engine",
            ct.EngineBuildConfig(precision="int8", dla_core=0, gpu_fallback=False),
        )
    with pytest.raises(EdgetlError, match="has 2 DLA cores"):
        ct.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", ct.EngineBuildConfig(precision="int8", dla_core=2))


def test_hardware_and_version_compatibility_where_supported(fake, tmp_path):
    src = _onnx(tmp_path / "m.onnx")
    fake("10.3.0")
    with pytest.raises(UnverifiedError, match="SAME_COMPUTE_CAPABILITY"):
        ct.build_engine(src, tmp_path / "m.engine", ct.EngineBuildConfig(hardware_compat="same_cc"))
    trt = fake("10.9.0")
    m = ct.build_engine(
        src, tmp_path / "m.engine", ct.EngineBuildConfig(hardware_compat="same_cc", version_compatible=True)
    )
    assert _calls(trt, "build_serialized_network") == [("GPU", -1, "SAME_COMPUTE_CAPABILITY")]
    assert _calls(trt, "set_flag") == [("VERSION_COMPATIBLE",)]
    assert m.hardware_compatibility == "same_cc" and m.version_compatible is True


# -------------------------------------------------------------------------------------------- runtime


def test_backend_refuses_mismatch_before_deserializing(fake, tmp_path):
    fake("10.3.0")
    engine = tmp_path / "model.fp32.engine"
    ct.build_engine(_onnx(tmp_path / "m.onnx"), engine)
    trt = fake("10.16.0")
    with pytest.raises(EdgetlError, match="built with TensorRT 10.3.0 for Fake GPU .* has TensorRT 10.16.0"):
        tb.TensorRTBackend(engine)
    assert _calls(trt, "deserialize_cuda_engine") == []


def test_backend_reports_failed_deserialization_in_one_line(fake, tmp_path):
    fake("10.3.0")
    engine = tmp_path / "model.fp32.engine"
    ct.build_engine(_onnx(tmp_path / "m.onnx"), engine, ct.EngineBuildConfig(version_compatible=True))
    trt = fake("10.3.0")
    with pytest.raises(EdgetlError, match="could not load model.fp32.engine: fake: Serialization assertion failed"):
        tb.TensorRTBackend(engine)
    # version-compatible plans need the host code switch before deserializing
    assert _calls(trt, "deserialize_cuda_engine") == [(len(b"ENGINE 10.3.0"), True)]


def test_check_engine_compatible_uses_sidecar(fake, tmp_path):
    fake("10.3.0")
    engine = tmp_path / "m.engine"
    ct.build_engine(_onnx(tmp_path / "m.onnx"), engine)
    assert ct.check_engine_compatible(engine).tensorrt_version == "10.3.0"
    fake("11.0.0")
    with pytest.raises(EdgetlError, match="rebuild it"):
        ct.check_engine_compatible(engine)


# ------------------------------------------------------------------ runtime data path (fake engine + memory)


class FakeCuda:
    """Device memory as bytearrays keyed by fake pointers; records frees."""

    stream_handle = 7

    def __init__(self):
        self.mem: dict[int, bytearray] = {}
        self.next, self.freed, self.closed = 4096, [], False

    def malloc(self, nbytes):
        ptr, self.next = self.next, self.next + nbytes + 256
        self.mem[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr):
        del self.mem[ptr]
        self.freed.append(ptr)

    def h2d(self, ptr, host):
        self.mem[ptr][: host.nbytes] = host.tobytes()

    def d2h(self, host, ptr):
        host.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.mem[ptr][: host.nbytes]), np.uint8)

    def synchronize(self):
        pass

    def event(self):
        return object()

    def record(self, event):
        pass

    def elapsed_ms(self, start, end):
        return 0.25

    def destroy_event(self, event):
        pass

    def close(self):
        self.closed = True


def _elementwise_engine(cuda: FakeCuda):
    """An engine computing y = 2*x + ids for x FLOAT [-1, 4], ids INT32 [-1, 4]; profile batch 1..4."""

    class Context:
        def __init__(self, trt):
            self.shapes, self.addr = {}, {}

        def set_input_shape(self, name, shape):
            ok = len(shape) == 2 and 1 <= shape[0] <= 4 and shape[1] == 4
            if ok:
                self.shapes[name] = tuple(shape)
            return ok

        def get_tensor_shape(self, name):
            return self.shapes["x"] if name == "y" else self.shapes[name]

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream_handle):
            assert stream_handle == FakeCuda.stream_handle
            n = int(np.prod(self.shapes["x"]))
            x = np.frombuffer(bytes(cuda.mem[self.addr["x"]][: 4 * n]), np.float32)
            ids = np.frombuffer(bytes(cuda.mem[self.addr["ids"]][: 4 * n]), np.int32)
            cuda.mem[self.addr["y"]][: 4 * n] = (2 * x + ids).astype(np.float32).tobytes()
            return True

    class Engine:
        def __init__(self, trt):
            self.trt = trt
            self.io = [("x", "INPUT", "FLOAT"), ("ids", "INPUT", "INT32"), ("y", "OUTPUT", "FLOAT")]

        num_io_tensors = property(lambda self: len(self.io))

        def get_tensor_name(self, i):
            return self.io[i][0]

        def get_tensor_mode(self, name):
            return getattr(self.trt.TensorIOMode, dict((n, m) for n, m, _ in self.io)[name])

        def get_tensor_dtype(self, name):
            return getattr(self.trt.DataType, dict((n, d) for n, _, d in self.io)[name])

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 4), (1, 4), (4, 4)]

        def create_execution_context(self):
            return Context(self.trt)

    return Engine


@pytest.fixture
def backend(fake, tmp_path, monkeypatch):
    cuda = FakeCuda()
    fake("10.3.0")
    engine = tmp_path / "model.fp32.engine"
    ct.build_engine(_onnx(tmp_path / "m.onnx"), engine)
    fake("10.3.0", engine=_elementwise_engine(cuda))
    monkeypatch.setattr(tb, "_cuda_provider", lambda device: cuda)  # after fake(), which installs its own
    b = tb.TensorRTBackend(engine)
    b.fake_cuda = cuda
    return b


def test_backend_runs_through_tensor_api(backend):
    assert backend.input_names == ["x", "ids"] and backend.output_names == ["y"]
    assert backend.batch_size is None  # the manifest's profile for "x" is absent: no single batch size claimed
    x = np.arange(8, dtype=np.float64).reshape(2, 4)  # float64 -> float32, int64 -> int32: same kind, cast
    ids = np.ones((2, 4), np.int64)
    out = backend.run({"x": x, "ids": ids})
    assert list(out) == ["y"] and out["y"].dtype == np.float32
    np.testing.assert_array_equal(out["y"], 2 * x + 1)


def test_backend_grows_buffers_and_frees_them(backend):
    cuda = backend.fake_cuda
    backend.run({"x": np.zeros((1, 4), np.float32), "ids": np.zeros((1, 4), np.int32)})
    assert cuda.freed == []
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    out = backend.run({"x": x, "ids": np.full((4, 4), 3, np.int32)})
    np.testing.assert_allclose(out["y"], 2 * x + 3)
    assert len(cuda.freed) == 3  # each of x, ids, y grew once
    backend.run({"x": x[:2], "ids": np.zeros((2, 4), np.int32)})  # smaller: reuses
    assert len(cuda.freed) == 3
    backend.close()
    assert cuda.mem == {} and cuda.closed
    with pytest.raises(EdgetlError, match="closed"):
        backend.run({"x": x, "ids": np.zeros((4, 4), np.int32)})


def test_backend_feed_errors_are_one_line(backend):
    with pytest.raises(EdgetlError, match=r"missing \['ids'\], unexpected \['mask'\]"):
        backend.run({"x": np.zeros((1, 4), np.float32), "mask": np.zeros((1, 4))})
    with pytest.raises(EdgetlError, match="input 'ids' is float32; model.fp32.engine expects int32"):
        backend.run({"x": np.zeros((1, 4), np.float32), "ids": np.zeros((1, 4), np.float32)})
    with pytest.raises(EdgetlError, match=r"shape \[5, 4\]; model.fp32.engine accepts \[1, 4\] to \[4, 4\]"):
        backend.run({"x": np.zeros((5, 4), np.float32), "ids": np.zeros((5, 4), np.int32)})


def test_backend_time_compute_returns_per_iteration_ms(backend):
    t = backend.time_compute({"x": np.zeros((1, 4), np.float32), "ids": np.zeros((1, 4), np.int32)}, iters=5, warmup=2)
    assert t.shape == (5,) and np.all(t == 0.25)
    with pytest.raises(EdgetlError, match="iters >= 1"):
        backend.time_compute({"x": np.zeros((1, 4), np.float32), "ids": np.zeros((1, 4), np.int32)}, iters=0)


# ------------------------------------------------------------------------- bundle engines (fake TensorRT)


def _bundle(tmp_path: Path, with_fp16: bool = False) -> Path:
    from edgetl.runtime.manifest import bundle_file_hashes, write_manifest

    b = tmp_path / "deploy"
    b.mkdir(parents=True)
    files = {"fp32": _onnx(b / "model.fp32.onnx"), "int8-modelopt": _onnx(b / "model.int8-modelopt.onnx", qdq=True)}
    if with_fp16:
        files["fp16"] = _onnx(b / "model.fp16.onnx", fp16=True)
    precision = {"fp32": "fp32", "fp16": "fp16", "int8-modelopt": "int8"}
    write_manifest(
        b,
        {
            "input": image_input(std=(0.5, 0.5, 0.5)),
            "tasks": [{"name": "logits", "kind": "classification", "labels": ["a", "b", "c", "d"], "output": "logits"}],
            "artifacts": {
                n: onnx_artifact(
                    p, precision[n], quantization={"backend": "modelopt"} if n == "int8-modelopt" else None
                )
                for n, p in files.items()
            },
            "files": bundle_file_hashes(b),
        },
    )
    return b


@pytest.fixture
def available(monkeypatch):
    import edgetl.compile.bundle as cb

    monkeypatch.setattr(cb, "trt_available", lambda: (True, "fake"))
    return cb


def test_bundle_engines_added_to_manifest(fake, available, tmp_path):
    from edgetl.runtime.manifest import read_manifest, verify_files

    b = _bundle(tmp_path)
    trt = fake("10.3.0")
    assert available.build_bundle_engines(b, fp16=True, int8=True, evaluate=False) == [
        "trt-fp32",
        "trt-fp16",
        "trt-int8",
    ]
    assert _calls(trt, "parse_from_file") == [("model.fp32.onnx",), ("model.fp32.onnx",), ("model.int8-modelopt.onnx",)]
    assert _calls(trt, "set_flag") == [("FP16",), ("INT8",), ("FP16",)]
    m = read_manifest(b)
    for name in ("trt-fp32", "trt-fp16", "trt-int8"):
        a = m.artifacts[name]
        assert (a.format, a.file, a.target) == ("tensorrt", f"model.{name}.engine", "tensorrt")
        assert f"model.{name}.engine.json" in m.files
    assert m.artifacts["trt-int8"].raw["quantization"] == {"backend": "modelopt"}
    assert m.artifacts["trt-fp16"].raw["source_artifact"] == "fp32"
    assert ".tensorrt-timing.cache" not in m.files and (b / ".tensorrt-timing.cache").is_file()
    verify_files(b, m)


def test_bundle_engines_on_trt11_need_the_fp16_artifact(fake, available, tmp_path):
    b = _bundle(tmp_path)
    trt = fake("11.0.0")
    with pytest.raises(EdgetlError, match="lacks: export with --fp16"):
        available.build_bundle_engines(b, fp16=True, evaluate=False)
    assert _calls(trt, "create_network") == []  # refused before any build
    b2 = _bundle(tmp_path / "two", with_fp16=True)
    trt = fake("11.0.0")
    available.build_bundle_engines(b2, fp16=True, evaluate=False)
    assert _calls(trt, "parse_from_file") == [("model.fp32.onnx",), ("model.fp16.onnx",)]


def test_bundle_engines_refuse_without_tensorrt(tmp_path, monkeypatch):
    import edgetl.compile.bundle as cb

    monkeypatch.setattr(cb, "trt_available", lambda: (False, "TensorRT not installed: engine build/run unverified"))
    with pytest.raises(UnverifiedError, match="--engine: TensorRT not installed"):
        cb.build_bundle_engines(tmp_path)

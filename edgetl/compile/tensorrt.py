"""Build TensorRT engines from ONNX, for TensorRT 10 and 11, with an engine manifest beside each.

UNVERIFIED: no TensorRT ran where this was written (it cannot be installed there). The calls follow
NVIDIA's Python bindings and docs for 10.x and 11.x; `benchmarks/gpu_smoke.sh` checks them on a GPU.

The two APIs differ in how precision is chosen:
  - TensorRT 10: a network whose types TensorRT may change ("weakly typed"), so FP16 is the builder flag
    `BuilderFlag.FP16`, and INT8 is `BuilderFlag.INT8` (+ FP16 fallback) over a Q/DQ ONNX — no calibrator.
    `strongly_typed=True` asks for `NetworkDefinitionCreationFlag.STRONGLY_TYPED` instead (types follow
    the ONNX; no precision flags).
  - TensorRT 11: always strongly typed; the precision flags and calibrators are gone. FP16 needs an FP16
    ONNX (`make_fp16_onnx`, modelopt AutoCast), INT8 a Q/DQ ONNX (modelopt).
Either way INT8 is refused on an ONNX without QuantizeLinear nodes, before TensorRT is touched.

`import tensorrt` happens only inside functions: importing this module never fails without TensorRT.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.engine_manifest import (
    HARDWARE_COMPAT_LEVELS,
    EngineManifest,
    atomic_write_bytes,
    check_engine_file,
    local_environment,
    sha256_file,
)
from edgetl.runtime.tensorrt_backend import TENSORRT_INSTALL_HINT, dtype_name, import_tensorrt, trt_logger
from edgetl.runtime.trt_support import detect_gpu_for_build, trt_available, trt_major

PRECISIONS = ("fp32", "fp16", "int8")
# Inputs that get a [batch, sequence] profile instead of [batch, fixed...].
TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_BATCH = (1, 1, 8)  # min/opt/max for a dynamic batch axis when none is given
QDQ_HINT = "export the modelopt Q/DQ artifact first (model.int8-modelopt.onnx, `edgetl export <run> --int8`)"
FP16_HINT = (
    "convert it first with edgetl.compile.tensorrt.make_fp16_onnx (modelopt AutoCast) or `edgetl export <run> --fp16`"
)

_FLOAT16 = 10  # onnx.TensorProto.FLOAT16, without importing onnx at module import


# --------------------------------------------------------------------------------------- availability


# --------------------------------------------------------------------------------------------- config


@dataclass
class EngineBuildConfig:
    """How to build one engine. `None` means "the default" (documented per field)."""

    precision: str = "fp32"  # fp32 | fp16 | int8
    # Batch profile for a dynamic batch axis; None -> DEFAULT_BATCH. A fixed batch axis accepts only its size.
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    # Sequence profile for text inputs (input_ids/attention_mask/token_type_ids) with a dynamic axis 1.
    # max_seq_len is required then; min defaults to 1 and opt to max.
    min_seq_len: int | None = None
    opt_seq_len: int | None = None
    max_seq_len: int | None = None
    workspace_bytes: int | None = None  # None -> TensorRT's default (the device's memory)
    timing_cache: str | os.PathLike | None = None  # loaded if present, written back after the build
    dla_core: int | None = None  # Jetson DLA core; needs fp16 or int8
    gpu_fallback: bool = True  # let layers the DLA cannot run fall back to the GPU
    hardware_compat: str = "none"  # none | ampere_plus | same_cc (TensorRT >= 10.9)
    version_compatible: bool = False  # loadable by later TensorRT of the same major version
    strongly_typed: bool | None = None  # None -> TensorRT 10: False (builder flags), 11: always True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgetlError(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.hardware_compat not in HARDWARE_COMPAT_LEVELS:
            raise EdgetlError(
                f"hardware_compat={self.hardware_compat!r} is not one of {', '.join(HARDWARE_COMPAT_LEVELS)}"
            )
        for name in (
            "min_batch",
            "opt_batch",
            "max_batch",
            "min_seq_len",
            "opt_seq_len",
            "max_seq_len",
            "workspace_bytes",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise EdgetlError(f"{name}={value!r} must be a positive integer")
        if self.dla_core is not None:
            if isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int) or self.dla_core < 0:
                raise EdgetlError(f"dla_core={self.dla_core!r} must be None or a DLA core index (0, 1)")
            if self.precision == "fp32":
                raise EdgetlError("dla_core is set with precision='fp32'; the DLA runs fp16 or int8 only")


# --------------------------------------------------------------------------------------- ONNX facts


@dataclass(frozen=True)
class OnnxSummary:
    """What the build needs to know about an ONNX file, read without TensorRT."""

    name: str
    inputs: tuple[tuple[str, tuple[int | str | None, ...]], ...]  # dynamic dims as their dim_param or None
    num_quantize: int  # QuantizeLinear nodes
    has_fp16: bool  # FP16 initializers, casts or tensors (an AutoCast / FP16 export)

    @property
    def has_qdq(self) -> bool:
        return self.num_quantize > 0


def inspect_onnx(onnx_path: str | os.PathLike) -> OnnxSummary:
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise EdgetlError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a protobuf decode error is a bad file, not a bug
        raise EdgetlError(f"{path.name} is not a readable ONNX model ({type(e).__name__}: {e})") from None

    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    init_names = {t.name for t in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        dims: list[int | str | None] = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        inputs.append((vi.name, tuple(dims)))

    num_q = sum(1 for n in nodes if n.op_type == "QuantizeLinear")
    has_fp16 = (
        any(t.data_type == _FLOAT16 for t in model.graph.initializer)
        or any(n.op_type == "Cast" and any(a.name == "to" and a.i == _FLOAT16 for a in n.attribute) for n in nodes)
        or any(
            v.type.tensor_type.elem_type == _FLOAT16
            for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        )
    )
    return OnnxSummary(name=path.name, inputs=tuple(inputs), num_quantize=num_q, has_fp16=has_fp16)


def _is_dynamic(d: Any) -> bool:
    return d is None or isinstance(d, str) or (isinstance(d, int) and d <= 0)


def _axis_range(
    label: str,
    input_name: str,
    onnx_name: str,
    dim: Any,
    given: tuple[int | None, int | None, int | None],
    default: tuple[int, int, int] | None,
    knobs: tuple[str, str, str],
) -> tuple[int, int, int]:
    lo, opt, hi = given
    if not _is_dynamic(dim):
        for knob, value in zip(knobs, given):
            if value is not None and value != dim:
                raise EdgetlError(
                    f"{knob}={value} but input {input_name!r} of {onnx_name} has a fixed {label} of {dim}; "
                    f"export it with a dynamic {label} axis or drop {knob}"
                )
        return dim, dim, dim
    if default is None:  # sequence axis: max is required, min defaults to 1, opt to max
        if hi is None:
            raise EdgetlError(
                f"input {input_name!r} of {onnx_name} has a dynamic {label} axis: set {knobs[2]} "
                "(e.g. the tokenizer's max_length)"
            )
        lo = 1 if lo is None else lo
        opt = hi if opt is None else opt
    else:
        lo = default[0] if lo is None else lo
        opt = max(lo, default[1]) if opt is None else opt
        hi = max(opt, default[2]) if hi is None else hi
    if not (1 <= lo <= opt <= hi):
        raise EdgetlError(
            f"{label} profile {knobs[0]}={lo}, {knobs[1]}={opt}, {knobs[2]}={hi} must satisfy 1 <= min <= opt <= max"
        )
    return lo, opt, hi


def derive_profiles(
    inputs: Sequence[tuple[str, Sequence[Any]]], cfg: EngineBuildConfig, onnx_name: str = "the model"
) -> dict[str, dict[str, list[int]]]:
    """One optimization profile from input shapes: {name: {"min", "opt", "max"}}.

    Axis 0 is the batch; axis 1 of input_ids/attention_mask/token_type_ids is the sequence. Any other
    dynamic axis (e.g. image height/width) is refused: export with a fixed image size.
    Dynamic dims are None, a dim_param string, or -1 (TensorRT's spelling).
    """
    batch_given = (cfg.min_batch, cfg.opt_batch, cfg.max_batch)
    seq_given = (cfg.min_seq_len, cfg.opt_seq_len, cfg.max_seq_len)
    profiles: dict[str, dict[str, list[int]]] = {}
    for name, shape in inputs:
        lo: list[int] = []
        opt: list[int] = []
        hi: list[int] = []
        for axis, dim in enumerate(shape):
            if axis == 0:
                r = _axis_range(
                    "batch", name, onnx_name, dim, batch_given, DEFAULT_BATCH, ("min_batch", "opt_batch", "max_batch")
                )
            elif axis == 1 and name in TEXT_INPUT_NAMES:
                r = _axis_range(
                    "sequence", name, onnx_name, dim, seq_given, None, ("min_seq_len", "opt_seq_len", "max_seq_len")
                )
            elif _is_dynamic(dim):
                raise EdgetlError(
                    f"input {name!r} of {onnx_name} has a dynamic axis {axis} ({dim or '?'}); only the batch axis "
                    f"{'and the sequence axis ' if name in TEXT_INPUT_NAMES else ''}may be dynamic for an engine: "
                    "export with fixed sizes"
                )
            else:
                r = (int(dim),) * 3
            lo.append(r[0])
            opt.append(r[1])
            hi.append(r[2])
        profiles[name] = {"min": lo, "opt": opt, "max": hi}
    return profiles


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class BuildPlan:
    """Version-dependent decisions, made without TensorRT so they can be tested anywhere."""

    major: int
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...] = field(default=())  # BuilderFlag names


def check_onnx_precision(summary: OnnxSummary, cfg: EngineBuildConfig) -> None:
    """The requested precision must match what the ONNX is (Q/DQ -> int8, FP16 tensors -> fp16/int8)."""
    name, p = summary.name, cfg.precision
    if p == "int8" and not summary.has_qdq:
        raise EdgetlError(f"precision='int8' needs a Q/DQ ONNX but {name} has no QuantizeLinear nodes: {QDQ_HINT}")
    if p != "int8" and summary.has_qdq:
        raise EdgetlError(
            f"{name} has {summary.num_quantize} QuantizeLinear nodes, so it builds an INT8 engine: "
            f"ask precision='int8' (not {p!r}) or pass the float ONNX"
        )
    if p == "fp32" and summary.has_fp16:
        raise EdgetlError(f"{name} holds FP16 tensors; ask precision='fp16' or pass the FP32 ONNX")


def plan_build(summary: OnnxSummary, cfg: EngineBuildConfig, major: int) -> BuildPlan:
    """Choose network and builder flags for TensorRT `major` (10 or 11; >11 is treated as 11)."""
    if major < 10:
        raise UnverifiedError(
            f"TensorRT {major}.x is older than 10; edgetl builds with TensorRT 10 or 11", hint=TENSORRT_INSTALL_HINT
        )
    check_onnx_precision(summary, cfg)
    name, p = summary.name, cfg.precision
    if major >= 11:
        if cfg.strongly_typed is False:
            raise EdgetlError(
                f"strongly_typed=False is impossible on TensorRT {major}: every network is strongly typed"
            )
        strongly = True
        network_flags: tuple[str, ...] = ()  # STRONGLY_TYPED is deprecated and ignored there
    else:
        strongly = bool(cfg.strongly_typed)
        network_flags = ("STRONGLY_TYPED",) if strongly else ()

    builder: list[str] = []
    if strongly:
        if p == "fp16" and not summary.has_fp16:
            raise EdgetlError(
                f"a strongly typed build (TensorRT {major}{'' if major >= 11 else ', strongly_typed=True'}) "
                f"takes precision from the ONNX, and {name} is FP32: {FP16_HINT}"
            )
    elif p == "fp16":
        builder.append("FP16")
    elif p == "int8":
        builder += ["INT8", "FP16"]  # explicit quantization from Q/DQ; FP16 for the layers left float
    if cfg.dla_core is not None and cfg.gpu_fallback:
        builder.append("GPU_FALLBACK")
    if cfg.version_compatible:
        builder.append("VERSION_COMPATIBLE")
    return BuildPlan(major=major, strongly_typed=strongly, network_flags=network_flags, builder_flags=tuple(builder))


# --------------------------------------------------------------------------------------------- FP16


def make_fp16_onnx(onnx_path: str | os.PathLike, out_path: str | os.PathLike, keep_io_types: bool = True) -> Path:
    """FP16 ONNX for strongly typed builds, via modelopt AutoCast; written atomically. Returns `out_path`."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError:
        raise UnverifiedError("modelopt is not installed", hint="pip install 'nvidia-modelopt[onnx]'") from None

    src = Path(onnx_path)
    if not src.is_file():
        raise EdgetlError(f"ONNX file {src} does not exist")
    model = convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16", keep_io_types=keep_io_types)
    atomic_write_bytes(out_path, model.SerializeToString())
    return Path(out_path)


# --------------------------------------------------------------------------------------------- build


def _flag_bits(enum: Any, names: Sequence[str]) -> int:
    bits = 0
    for n in names:
        bits |= 1 << int(getattr(enum, n))
    return bits


def _io(tensors: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"name": t.name, "dtype": dtype_name(t.dtype), "shape": [int(d) for d in t.shape]} for t in tensors]


@contextmanager
def _onnx_for_parser(trt: Any, logger: Any, onnx_path: Path) -> Iterator[Path]:
    """The file TensorRT parses: `onnx_path`, or, when it holds ONNX NonMaxSuppression (slow in TensorRT), a copy
    `<stem>.trt-nms.onnx` in a temp dir (removed after parsing) with EfficientNMS_TRT swapped in per detection
    task (edgetl.compile.efficient_nms; same outputs). The plugin registry is initialized for the parser then."""
    from edgetl.compile.efficient_nms import nms_tasks, swap_in_efficient_nms

    tasks = nms_tasks(onnx_path)
    if not tasks:
        yield onnx_path
        return
    trt.init_libnvinfer_plugins(logger, "")
    with tempfile.TemporaryDirectory(prefix="edgetl-trt-nms-") as tmp:
        swapped = Path(tmp) / f"{onnx_path.stem}.trt-nms.onnx"
        swap_in_efficient_nms(onnx_path, swapped, tasks)
        yield swapped


def build_engine(
    onnx_path: str | os.PathLike, out_path: str | os.PathLike, cfg: EngineBuildConfig | None = None
) -> EngineManifest:
    """ONNX -> serialized engine at `out_path` (+ `<out_path>.json` manifest), both written atomically."""
    cfg = cfg or EngineBuildConfig()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    summary = inspect_onnx(onnx_path)
    check_onnx_precision(summary, cfg)  # e.g. INT8 without Q/DQ: refused before TensorRT is touched
    derive_profiles(summary.inputs, cfg, summary.name)  # profile errors before TensorRT, too

    trt = import_tensorrt()
    version = str(trt.__version__)
    plan = plan_build(summary, cfg, int(version.split(".")[0]))
    gpu = detect_gpu_for_build()
    if not gpu:
        raise UnverifiedError(f"TensorRT {version} is installed but no NVIDIA GPU was found to build on")

    logger = trt_logger(trt)
    mark = logger.capture.mark()
    started = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(_flag_bits(trt.NetworkDefinitionCreationFlag, plan.network_flags))
    parser = trt.OnnxParser(network, logger)
    with _onnx_for_parser(trt, logger, onnx_path) as parse_path:
        parsed = parser.parse_from_file(str(parse_path))  # from the file, so external weights resolve
    if not parsed:
        errors = [" ".join(str(parser.get_error(i).desc()).split()) for i in range(parser.num_errors)]
        raise EdgetlError(
            f"TensorRT {version} could not parse {onnx_path.name}: "
            f"{'; '.join(errors[:3]) or logger.capture.errors_since(mark)}"
            + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
        )

    config = builder.create_builder_config()
    if cfg.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_bytes)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))

    # Optimization profile from the parsed network's inputs (-1 = dynamic).
    net_inputs = [network.get_input(i) for i in range(network.num_inputs)]
    net_outputs = [network.get_output(i) for i in range(network.num_outputs)]
    profiles = derive_profiles([(t.name, [int(d) for d in t.shape]) for t in net_inputs], cfg, onnx_path.name)
    dynamic = [t.name for t in net_inputs if any(int(d) < 0 for d in t.shape)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for name in dynamic:
            s = profiles[name]
            profile.set_shape(name, s["min"], s["opt"], s["max"])
        config.add_optimization_profile(profile)

    # Timing cache: reuse what an earlier build measured on this GPU + TensorRT.
    cache_path = Path(cfg.timing_cache) if cfg.timing_cache is not None else None
    cache_info = None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        if cache is None:
            raise EdgetlError(f"timing cache {cache_path} is not a TensorRT {version} timing cache: delete it")
        if not config.set_timing_cache(cache, False):
            raise EdgetlError(
                f"timing cache {cache_path} was made for another GPU or TensorRT version: delete it or give another path"
            )
        cache_info = {"file": str(cache_path), "loaded": bool(blob), "saved": False}

    # DLA (Jetson): default device + core; layers it cannot run fall back to the GPU (recorded).
    fallback: list[str] = []
    if cfg.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if cores == 0:
            raise UnverifiedError(f"dla_core={cfg.dla_core} but this machine has no DLA (Jetson AGX/NX Orin have 2)")
        if cfg.dla_core >= cores:
            raise EdgetlError(f"dla_core={cfg.dla_core} but this machine has {cores} DLA cores (0..{cores - 1})")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not config.can_run_on_DLA(layer):
                fallback.append(layer.name)
        if fallback and not cfg.gpu_fallback:
            raise EdgetlError(
                f"{len(fallback)} layers of {onnx_path.name} cannot run on the DLA (first: {fallback[0]!r}) "
                "and gpu_fallback=False: allow GPU fallback or change the model"
            )

    # Hardware compatibility, where this TensorRT has it.
    if cfg.hardware_compat != "none":
        member = {"ampere_plus": "AMPERE_PLUS", "same_cc": "SAME_COMPUTE_CAPABILITY"}[cfg.hardware_compat]
        levels = getattr(trt, "HardwareCompatibilityLevel", None)
        if levels is None or not hasattr(levels, member) or not hasattr(config, "hardware_compatibility_level"):
            raise UnverifiedError(
                f"hardware_compat={cfg.hardware_compat!r} needs HardwareCompatibilityLevel.{member}, which TensorRT "
                f"{version} lacks ({'10.9' if member == 'SAME_COMPUTE_CAPABILITY' else '8.6'} or newer has it)"
            )
        config.hardware_compatibility_level = getattr(levels, member)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgetlError(
            f"TensorRT {version} failed to build an engine from {onnx_path.name}: {logger.capture.errors_since(mark)}"
        )
    build_seconds = time.perf_counter() - started
    # IHostMemory exposes the plan through the buffer protocol; hash and write it without copies.
    engine_sha = hashlib.sha256(serialized).hexdigest()
    atomic_write_bytes(out_path, serialized)
    del serialized

    if cache_path is not None and cache_info is not None:
        atomic_write_bytes(cache_path, config.get_timing_cache().serialize())
        cache_info["saved"] = True

    import edgetl

    manifest = EngineManifest(
        engine_file=out_path.name,
        engine_sha256=engine_sha,
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        tensorrt_version=version,
        gpu_name=gpu["gpu_name"],
        compute_capability=gpu["compute_capability"],
        precision=cfg.precision,
        strongly_typed=plan.strongly_typed,
        builder_flags=list(plan.builder_flags),
        profiles=profiles,
        io={"inputs": _io(net_inputs), "outputs": _io(net_outputs)},
        workspace_bytes=cfg.workspace_bytes,
        dla_core=cfg.dla_core,
        gpu_fallback=bool(cfg.dla_core is not None and cfg.gpu_fallback),
        dla_fallback_layers=fallback,
        hardware_compatibility=cfg.hardware_compat,
        version_compatible=cfg.version_compatible,
        timing_cache=cache_info,
        build_seconds=round(build_seconds, 3),
        created_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        producer={"name": "edgetl", "version": edgetl.__version__, "gpu_probe": gpu.get("source", "")},
    )
    manifest.write(out_path)
    return manifest


def check_engine_compatible(engine_path: str | os.PathLike, *, strict_gpu_model: bool = True) -> EngineManifest:
    """Compare `<engine>.json` with the local TensorRT and GPU before anything deserializes the engine."""
    from edgetl.runtime.engine_manifest import read_engine_manifest

    read_engine_manifest(engine_path)  # missing sidecar: refused before TensorRT is imported
    trt = import_tensorrt()
    local = local_environment(trt.__version__, detect_gpu_for_build())
    return check_engine_file(engine_path, local, strict_gpu_model=strict_gpu_model)


__all__ = [
    "DEFAULT_BATCH",
    "PRECISIONS",
    "TEXT_INPUT_NAMES",
    "BuildPlan",
    "EngineBuildConfig",
    "EngineManifest",
    "OnnxSummary",
    "build_engine",
    "check_engine_compatible",
    "check_onnx_precision",
    "derive_profiles",
    "detect_gpu_for_build",
    "inspect_onnx",
    "make_fp16_onnx",
    "plan_build",
    "trt_available",
    "trt_major",
]

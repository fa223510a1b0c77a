"""The one place edgetl reaches into ONNX Runtime's quantization package (listed in docs/compatibility.md).

Every INT8 model can be produced through ORT's public API (`quantize_static`, `quantize_dynamic`,
`create_calibrator`). Two speed-ups sit on top, each feature-detected, each with that public path as the
fallback that writes the same bytes (tests/test_ort_api.py holds them to it):

1. Calibrate once, quantize many. The accuracy gate re-quantizes one model tens of times with the same ranges.
   Newer ORT takes the ranges publicly (`quantize_static(calibration_cache_path=...)`, "cache"); older ones only
   through the `QDQQuantizer` class ("quantizer"), built here with keyword arguments after its signature was
   checked. Otherwise every call recalibrates through `quantize_static` ("public"): same model, only slower.
2. Weight memo. Each quantization recomputes per-channel weight scales and INT8 weights in Python. For the
   duration of one call the helpers that do it are wrapped by a memo that binds arguments by the helper's own
   signature, so a keyword a new release adds (ORT 1.30 added `block_size`) becomes part of the key instead
   of a `TypeError`; arguments it cannot key are passed straight through.
"""

from __future__ import annotations

import copy
import enum
import functools
import hashlib
import inspect
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

log = logging.getLogger("edgetl")

# (module, attribute) of the weight helpers worth memoizing, as the quantizers that call them import them.
MEMO_TARGETS = (
    ("onnxruntime.quantization.qdq_quantizer", "quantize_onnx_initializer"),
    ("onnxruntime.quantization.qdq_quantizer", "compute_data_quant_params"),
    ("onnxruntime.quantization.base_quantizer", "quantize_data"),
)
# QDQQuantizer keyword arguments the "quantizer" path passes; a release that renames one falls back.
QDQ_QUANTIZER_ARGS = (
    "model",
    "per_channel",
    "reduce_range",
    "weight_qType",
    "activation_qType",
    "tensors_range",
    "nodes_to_quantize",
    "nodes_to_exclude",
    "op_types_to_quantize",
    "extra_options",
)
STATIC_PATHS = ("cache", "quantizer", "public")


class Reader:
    """A CalibrationDataReader over a list of feed dicts (one batch each); rewinds for every calibration."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self.i = 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0

    def __len__(self):
        return len(self.feeds)


def calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def calibration_options(method: str) -> dict:
    """`quantize_static` extra_options for the calibrator (the same values `calibrate` passes directly)."""
    return {"CalibPercentile": 99.999} if method == "percentile" else {}


def calibrate(model_path: Path, feeds: list[dict], method: str, work_dir: Path, op_types: list[str]):
    """Activation ranges (ORT's TensorsData) from the public calibrator, computed once."""
    from onnxruntime.quantization import create_calibrator

    calibrator = create_calibrator(
        Path(model_path),
        op_types,
        augmented_model_path=str(Path(work_dir) / "augmented.onnx"),
        calibrate_method=calibration_method(method),
        providers=["CPUExecutionProvider"],
        extra_options={"percentile": 99.999} if method == "percentile" else {},
    )
    calibrator.collect_data(Reader(feeds))
    ranges = calibrator.compute_data()
    del calibrator
    _cache_file(work_dir, method).unlink(missing_ok=True)  # the "cache" path must never read older ranges
    return ranges


def _cache_file(work_dir: Path, method: str) -> Path:
    return Path(work_dir) / f"ranges-{method}.json"


def default_static_ops() -> list[str]:
    """What `quantize_static` quantizes when given no op types (sorted: the order never changes the model)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


# ----------------------------------------------------------------------------------------- feature detection
def _params(fn) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def has_calibration_cache() -> bool:
    """ORT's public `quantize_static` reads precomputed ranges from a cache file (newer releases)."""
    import onnxruntime.quantization as q

    return "calibration_cache_path" in _params(q.quantize_static) and hasattr(q, "save_tensors_data")


def qdq_quantizer_usable() -> bool:
    """`QDQQuantizer` still takes the keyword arguments this module passes, and the helpers to load a model the
    way `quantize_static` does are where they were."""
    try:
        from onnxruntime.quantization import QDQQuantizer
        from onnxruntime.quantization.quant_utils import load_model_with_shape_infer, update_opset_version  # noqa: F401
    except ImportError:
        return False
    return set(QDQ_QUANTIZER_ARGS) <= _params(QDQQuantizer.__init__) and "weight_type" in _params(update_opset_version)


def static_paths() -> list[str]:
    """The ways this ORT can re-quantize from fixed ranges, fastest first ("public" always works)."""
    return [p for p, ok in (("cache", has_calibration_cache()), ("quantizer", qdq_quantizer_usable())) if ok] + [
        "public"
    ]


# ------------------------------------------------------------------------------------------------ weight memo
class _Unkeyable(Exception):
    pass


def _digest(b: bytes) -> bytes:
    return hashlib.blake2b(b, digest_size=16).digest()


def _key(value):
    """A hashable stand-in for one argument; raises _Unkeyable for anything it cannot key exactly."""
    import onnx

    if value is None or isinstance(value, (bool, int, float, str, bytes, enum.Enum)):
        return value
    if isinstance(value, np.ndarray):
        return ("a", value.dtype.str, value.shape, _digest(np.ascontiguousarray(value).tobytes()))
    if isinstance(value, np.generic):
        return ("s", value.dtype.str, value.item())
    if isinstance(value, onnx.TensorProto):
        return ("t", _digest(value.SerializeToString()))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("d", tuple(sorted((str(k), _key(v)) for k, v in value.items())))
    raise _Unkeyable(type(value).__name__)


def memoized(fn, cache: dict, tag: str):
    """`fn` with results cached by its bound arguments (defaults applied); results are handed out as copies."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            key = (tag, tuple((name, _key(v)) for name, v in bound.arguments.items()))
        except (TypeError, _Unkeyable):
            return fn(*args, **kwargs)  # a call this memo does not understand: no caching, same result
        if key not in cache:
            cache[key] = fn(*args, **kwargs)
        return copy.deepcopy(cache[key])

    wrapper.__edgetl_memo__ = True
    return wrapper


@contextmanager
def weight_memo(cache: dict | None):
    """Memoize ORT's weight-quantization helpers for the duration of one quantization (None: no memo)."""
    import importlib

    patched = []
    if cache is not None:
        for mod_name, attr in MEMO_TARGETS:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:
                continue
            fn = getattr(mod, attr, None)
            if callable(fn) and not getattr(fn, "__edgetl_memo__", False):
                setattr(mod, attr, memoized(fn, cache, f"{mod_name}.{attr}"))
                patched.append((mod, attr, fn))
    try:
        yield
    finally:
        for mod, attr, fn in reversed(patched):
            setattr(mod, attr, fn)


# ------------------------------------------------------------------------------------------------ quantizing
def quantize_static_qdq(
    model_path: Path,
    out_path: Path,
    *,
    feeds: list[dict],
    method: str,
    ranges,
    per_channel: bool,
    reduce_range: bool,
    nodes_to_exclude: list[str],
    op_types: list[str],
    extra_options: dict,
    work_dir: Path,
    path: str = "auto",
    memo: dict | None = None,
) -> str:
    """Static Q/DQ (S8 weights, U8 activations) from `model_path` into `out_path`; returns the path taken.

    `ranges` are the activation ranges `calibrate` returned for `feeds`; the "public" path recalibrates from
    `feeds` instead (deterministic: the same ranges).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    available = static_paths()
    chosen = available[0] if path == "auto" else path
    if chosen not in available:
        raise ValueError(f"ORT static quantization path {chosen!r} is not available here ({', '.join(available)})")
    kwargs = dict(
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(op_types),
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=calibration_method(method),
        calibration_providers=["CPUExecutionProvider"],
        extra_options={**calibration_options(method), **extra_options},
    )
    with _atomic_output(out_path) as tmp, weight_memo(memo):
        if chosen == "cache":
            cache_file = _cache_file(work_dir, method)
            if not cache_file.is_file():
                from onnxruntime.quantization import save_tensors_data

                save_tensors_data(ranges, cache_file)
            quantize_static(str(model_path), str(tmp), None, calibration_cache_path=str(cache_file), **kwargs)
        elif chosen == "quantizer":
            _quantize_with_qdq_quantizer(model_path, tmp, ranges, kwargs)
        else:
            quantize_static(str(model_path), str(tmp), Reader(feeds), **kwargs)
    return chosen


def _quantize_with_qdq_quantizer(model_path: Path, out: Path, ranges, kw: dict) -> None:
    """What `quantize_static` does after calibrating, with our ranges (older ORT has no public way in)."""
    from onnxruntime.quantization import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer, update_opset_version

    model = load_model_with_shape_infer(Path(model_path))
    opset_kw = {"activation_type": kw["activation_type"]} if "activation_type" in _params(update_opset_version) else {}
    model = update_opset_version(model, weight_type=kw["weight_type"], **opset_kw)
    q = QDQQuantizer(
        model=model,
        per_channel=kw["per_channel"],
        reduce_range=kw["reduce_range"],
        weight_qType=kw["weight_type"],
        activation_qType=kw["activation_type"],
        tensors_range=ranges,
        nodes_to_quantize=[],
        nodes_to_exclude=kw["nodes_to_exclude"],
        op_types_to_quantize=kw["op_types_to_quantize"],
        extra_options=kw["extra_options"],
    )
    q.quantize_model()
    q.model.save_model_to_file(str(out), False)


def quantize_dynamic_int8(
    model_path: Path,
    out_path: Path,
    *,
    per_channel: bool,
    reduce_range: bool,
    nodes_to_exclude: list[str],
    op_types: list[str],
    memo: dict | None = None,
) -> None:
    """Dynamic INT8 (weights ahead of time, activations per call) through ORT's public `quantize_dynamic`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _atomic_output(out_path) as tmp, weight_memo(memo):
        quantize_dynamic(
            str(model_path),
            str(tmp),
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude),
            extra_options={"MatMulConstBOnly": True},
        )


@contextmanager
def _atomic_output(out_path: Path):
    """A hidden temporary name beside `out_path`, renamed over it on success and removed on any failure."""
    out_path = Path(out_path)
    fd, name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=".tmp.onnx")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)

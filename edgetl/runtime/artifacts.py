"""The artifact catalogue: every kind of model file a bundle can hold, and the headline metric of each task kind.

Written once, read by export (which steps make what), `edgetl build` (which ONNX model each TensorRT engine is
built from, per TensorRT major version), bench, the Predictor's default choice, DeepStream configs and every
report. Adding an artifact kind (say `trt-dla-int8` or `int4`) means one entry here plus the step that makes it.
Torch-free: the runtime on a device reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgetl.runtime.tasks import get_kind, kind_names

__all__ = [
    "ARTIFACT_KINDS",
    "HEADLINE_METRIC",
    "ArtifactKind",
    "artifact_kind",
    "deepstream_choice",
    "default_fallback",
    "engine_kinds",
    "engine_source",
    "format_headline",
    "headline_metric",
    "headline_score",
    "headline_value",
    "in_points",
    "infer_kind",
    "int8_artifact_for",
]


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of model file in a bundle.

    `made_by` names the export step (edgetl.bundle.pipeline) or the `edgetl build` step that produces it.
    `built_from` (TensorRT engines only): (oldest TensorRT major, ONNX artifact the engine is built from),
    newest last; TensorRT 11 dropped implicit FP16 so its FP16 engine needs the FP16 ONNX model.
    `fallback_rank`: the Predictor's choice, lowest first, when a bundle names no `default_artifact`.
    `deepstream_rank`: the DeepStream config's choice, lowest first, when no --artifact is given.
    `calibration` (INT8 steps only): the calibration methods its quantizer has; any other is refused, never swapped.
    """

    name: str
    file: str
    format: str  # onnx | tensorrt
    precision: str  # fp32 | fp16 | int8
    target: str  # where it is meant to run: any | cpu | gpu | tensorrt
    made_by: str
    built_from: tuple[tuple[int, str], ...] = ()
    fallback_rank: int | None = None
    deepstream_rank: int | None = None
    int8_target: str | None = None  # the `--target` whose INT8 step makes it (cpu | tensorrt)
    calibration: tuple[str, ...] = ()


ARTIFACT_KINDS: dict[str, ArtifactKind] = {
    k.name: k
    for k in (
        ArtifactKind(
            "fp32", "model.fp32.onnx", "onnx", "fp32", "any", "build_fp32", fallback_rank=1, deepstream_rank=3
        ),
        ArtifactKind("fp16", "model.fp16.onnx", "onnx", "fp16", "gpu", "build_fp16"),
        ArtifactKind(
            "int8-ort",
            "model.int8-ort.onnx",
            "onnx",
            "int8",
            "cpu",
            "build_int8",
            fallback_rank=0,
            int8_target="cpu",
            calibration=("minmax", "entropy", "percentile"),  # ONNX Runtime's MinMax, Entropy, Percentile
        ),
        ArtifactKind(
            "int8-modelopt",
            "model.int8-modelopt.onnx",
            "onnx",
            "int8",
            "tensorrt",
            "build_int8",
            int8_target="tensorrt",
            calibration=("minmax", "entropy"),  # modelopt's `max` and `entropy`
        ),
        ArtifactKind("int8-qat", "model.int8-qat.onnx", "onnx", "int8", "cpu", "maybe_qat"),
        ArtifactKind(
            "trt-fp32",
            "model.trt-fp32.engine",
            "tensorrt",
            "fp32",
            "tensorrt",
            "build_engines",
            built_from=((10, "fp32"),),
            deepstream_rank=2,
        ),  # fmt: skip
        ArtifactKind(
            "trt-fp16",
            "model.trt-fp16.engine",
            "tensorrt",
            "fp16",
            "tensorrt",
            "build_engines",
            built_from=((10, "fp32"), (11, "fp16")),
            deepstream_rank=1,
        ),  # fmt: skip
        ArtifactKind(
            "trt-int8",
            "model.trt-int8.engine",
            "tensorrt",
            "int8",
            "tensorrt",
            "build_engines",
            built_from=((10, "int8-modelopt"),),
            deepstream_rank=0,
        ),  # fmt: skip
    )
}


def artifact_kind(name: str) -> ArtifactKind:
    try:
        return ARTIFACT_KINDS[name]
    except KeyError:
        raise KeyError(f"unknown artifact kind {name!r}; known: {', '.join(ARTIFACT_KINDS)}") from None


def int8_artifact_for(target: str) -> ArtifactKind:
    """The artifact the INT8 step makes for an export target (cpu -> int8-ort, tensorrt -> int8-modelopt)."""
    for k in ARTIFACT_KINDS.values():
        if k.int8_target == target:
            return k
    raise KeyError(f"no INT8 artifact for target {target!r}")


def engine_kinds() -> list[ArtifactKind]:
    return [k for k in ARTIFACT_KINDS.values() if k.format == "tensorrt"]


def engine_source(name: str, trt_major: int) -> str:
    """The ONNX artifact that TensorRT `trt_major` builds engine `name` from."""
    src = None
    for oldest, artifact in artifact_kind(name).built_from:
        if trt_major >= oldest:
            src = artifact
    if src is None:
        raise KeyError(f"{name}: not buildable with TensorRT {trt_major}")
    return src


def _ranked(attr: str) -> list[str]:
    ranked = [k for k in ARTIFACT_KINDS.values() if getattr(k, attr) is not None]
    return [k.name for k in sorted(ranked, key=lambda k: getattr(k, attr))]


def default_fallback(available) -> str | None:
    """The Predictor's artifact when a bundle names no default: the first of int8-ort, fp32 it has."""
    return next((n for n in _ranked("fallback_rank") if n in available), None)


def deepstream_choice(available) -> str | None:
    """DeepStream's artifact when none is asked for: the fastest engine, else the FP32 ONNX model."""
    return next((n for n in _ranked("deepstream_rank") if n in available), None)


# ------------------------------------------------------------------------------------ headline metric per task kind
# Each kind declares its headline in its registry entry (edgetl.runtime.tasks); this view is for tables and old files.
HEADLINE_METRIC = {name: get_kind(name).headline for name in kind_names()}


def headline_metric(kind: str) -> str:
    return get_kind(kind).headline


def infer_kind(metrics: dict) -> str | None:
    """A record that lost its task kind (old bench JSON): the first headline metric it holds says the kind."""
    return next((k for k, m in HEADLINE_METRIC.items() if m in metrics), None)


def headline_value(metrics: dict | None, kind: str | None = None) -> float | None:
    """The task's headline metric as recorded (accuracy / micro-F1 as a fraction, MAE in target units)."""
    if not isinstance(metrics, dict):
        return None
    kind = kind or infer_kind(metrics)
    v = metrics.get(HEADLINE_METRIC[kind]) if kind in HEADLINE_METRIC else None
    if not isinstance(v, (int, float)) or math.isnan(v):
        return None
    return float(v)


def headline_score(kind: str, metrics: dict) -> float:
    """Higher is better: what the accuracy gate and checkpoint selection compare (MAE negated)."""
    return get_kind(kind).headline_score(metrics)


def in_points(kind: str) -> bool:
    """Accuracy-like metrics are shown and compared in percentage points; regression errors in their units."""
    return get_kind(kind).in_points


def format_headline(kind: str, value: float | None, unit: bool = False) -> str:
    """'90.40' for accuracy-like metrics (percent), '0.123' (or '0.123 MAE' with `unit`) for regression."""
    return get_kind(kind).format_headline(value, unit)

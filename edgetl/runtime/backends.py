"""Inference backends behind one tiny protocol, chosen by the artifact's `format`.

The predictor only needs names in, names out and `run`; keeping that contract minimal lets ONNX Runtime
and TensorRT (written elsewhere, imported lazily so devices without it still work) be swapped per artifact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.manifest import Artifact, resolve_in_bundle

__all__ = ["Backend", "OnnxRuntimeBackend", "create_backend"]

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}


@runtime_checkable
class Backend(Protocol):
    """What the predictor needs from an inference engine.

    `batch_size` is optional (read with getattr): an int when the model only accepts that batch size,
    None when the batch dimension is dynamic.
    """

    @property
    def input_names(self) -> Sequence[str]: ...

    @property
    def output_names(self) -> Sequence[str]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


ProviderSpec = str | tuple[str, dict[str, Any]]


class OnnxRuntimeBackend:
    """One ONNX Runtime session; feeds are cast to the dtypes the model declares (e.g. FP16 inputs)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[ProviderSpec] | None = None,
        intra_op_threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgetlError("ONNX artifacts need onnxruntime: pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise EdgetlError(f"{path}: model file not found")
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        for p in providers:
            name = p[0] if isinstance(p, tuple) else p
            if name not in available:
                raise EdgetlError(
                    f"execution provider {name!r} is not available in this onnxruntime; "
                    f"available: {', '.join(available)}"
                )
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            if int(intra_op_threads) < 0:
                raise EdgetlError(f"intra_op_threads must be >= 0 (0 = onnxruntime's default), got {intra_op_threads}")
            options.intra_op_num_threads = int(intra_op_threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgetlError(f"{path}: onnxruntime cannot load the model: {first}") from None
        self.path = path
        inputs = self.session.get_inputs()
        self.input_names = tuple(i.name for i in inputs)
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.input_dtypes = {i.name: _ORT_DTYPES.get(i.type) for i in inputs}
        batch = inputs[0].shape[0] if inputs and inputs[0].shape else None
        self.batch_size: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.providers = tuple(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run all outputs; returns {output name: array}."""
        for name, arr in feeds.items():
            want = self.input_dtypes.get(name)
            if want is not None and arr.dtype != want:
                feeds = {**feeds, name: arr.astype(want)}  # never mutate the caller's dict
        outs = self.session.run(None, feeds)
        return dict(zip(self.output_names, outs))

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({str(self.path)!r}, providers={list(self.providers)})"


def create_backend(
    artifact_entry: Artifact | Mapping[str, Any],
    bundle_dir: str | os.PathLike[str],
    providers: Sequence[ProviderSpec] | None = None,
    intra_op_threads: int | None = None,
) -> Backend:
    """Build the backend for one manifest artifact, by its `format` (onnx -> ORT, tensorrt -> TensorRT)."""
    fmt: object
    rel: object
    if isinstance(artifact_entry, Artifact):
        fmt, rel, name = artifact_entry.format, artifact_entry.file, artifact_entry.name
    else:
        fmt, rel, name = artifact_entry.get("format"), artifact_entry.get("file"), str(artifact_entry.get("name", "?"))
    path = resolve_in_bundle(bundle_dir, rel, f"artifacts.{name}.file")
    if fmt == "onnx":
        return OnnxRuntimeBackend(path, providers=providers, intra_op_threads=intra_op_threads)
    if fmt == "tensorrt":
        if providers or intra_op_threads is not None:
            raise EdgetlError(
                f"artifact {name!r} is a TensorRT engine; providers and intra_op_threads apply to ONNX artifacts only"
            )
        try:
            from edgetl.runtime.tensorrt_backend import TensorRTBackend
        except ImportError as exc:
            raise UnverifiedError(
                f"artifact {name!r} ({rel}) needs TensorRT, which is not installed here ({exc}); "
                "install TensorRT (JetPack or NVIDIA's wheels) or pick an ONNX artifact"
            ) from None
        return TensorRTBackend(path)
    raise EdgetlError(
        f"{Path(bundle_dir) / 'manifest.json'}: artifacts.{name}.format {fmt!r} is not supported "
        "(expected 'onnx' or 'tensorrt')"
    )

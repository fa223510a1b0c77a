"""Run a TensorRT engine through the runtime backend protocol (`input_names`, `output_names`, `run`).

UNVERIFIED: written against the TensorRT 10/11 Python tensor API from NVIDIA's sources and docs; no
TensorRT ran on the machine this was written on. `benchmarks/gpu_smoke.sh` is the check.

Loading goes: engine manifest (`<engine>.json`) -> compare with the local TensorRT and GPU -> check the
engine's sha256 -> `deserialize_cuda_engine`. Running uses the tensor API (present in 8.6, 10 and 11):
`set_input_shape`, `set_tensor_address`, `execute_async_v3` on a non-default stream. Device buffers come
from cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` for old cuda-python), else from torch CUDA
tensors when torch happens to be installed (imported only then).

Never imports torch or anything of edgetl outside `edgetl.runtime` and `edgetl.errors`.
"""

from __future__ import annotations

import collections
import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.engine_manifest import (
    REBUILD_HINT,
    EngineManifest,
    check_engine_file,
    detect_gpu,
    local_environment,
    read_engine_manifest,
)

log = logging.getLogger("edgetl.tensorrt")

TENSORRT_INSTALL_HINT = (
    "install TensorRT >= 10 from NVIDIA: `pip install tensorrt cuda-python` on a desktop GPU, "
    "or the JetPack TensorRT on Jetson"
)
CUDA_INSTALL_HINT = "install cuda-python (`pip install cuda-python`) or a CUDA build of torch"

# TensorRT DataType name -> numpy dtype (BF16/FP8/INT4/FP4 have no numpy type).
_NP_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def import_tensorrt():
    """`import tensorrt`, or UnverifiedError with the install command."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:  # OSError: the wheel is there but libnvinfer is not loadable
        raise UnverifiedError(f"TensorRT is not usable here ({e})", hint=TENSORRT_INSTALL_HINT) from None
    return trt


def dtype_name(dtype: Any) -> str:
    """'FLOAT' for trt.DataType.FLOAT (pybind enums carry .name; fall back to 'DataType.FLOAT' text)."""
    name = getattr(dtype, "name", None)
    return str(name if name is not None else str(dtype).rsplit(".", 1)[-1])


def numpy_dtype(dtype: Any) -> np.dtype:
    name = dtype_name(dtype)
    if name not in _NP_DTYPES:
        raise UnverifiedError(f"engine tensor type {name} has no numpy equivalent; edgetl runs FLOAT/HALF/INT/BOOL I/O")
    return np.dtype(_NP_DTYPES[name])


class _CapturingLogger:
    """Keeps TensorRT's recent warnings and errors so a failed build or load can say why in one line."""

    def __init__(self, maxlen: int = 64):
        self.messages: collections.deque[tuple[int, str]] = collections.deque(maxlen=maxlen)
        self.count = 0

    def record(self, severity: Any, msg: str) -> None:
        level = int(severity)  # INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4
        if level > 2:
            return
        self.messages.append((level, str(msg)))
        self.count += 1
        log.log(logging.ERROR if level <= 1 else logging.WARNING, "TensorRT: %s", msg)

    def mark(self) -> int:
        return self.count

    def errors_since(self, mark: int, limit: int = 3) -> str:
        """The last `limit` error (else warning) messages logged after `mark`, joined on one line."""
        new = list(self.messages)[-(self.count - mark) :] if self.count > mark else []
        chosen = [m for lvl, m in new if lvl <= 1] or [m for _, m in new]
        return " | ".join(" ".join(m.split()) for m in chosen[-limit:]) or "TensorRT logged no error"


_LOGGERS: dict[int, Any] = {}


def trt_logger(trt) -> Any:
    """One capturing ILogger per tensorrt module per process (TensorRT prefers a single logger)."""
    key = id(trt)
    if key not in _LOGGERS:

        class EdgetlTrtLogger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.capture = _CapturingLogger()

            def log(self, severity, msg):
                self.capture.record(severity, msg)

        _LOGGERS[key] = EdgetlTrtLogger()
    return _LOGGERS[key]


def local_trt_environment(trt, device: int = 0) -> dict[str, str]:
    """{"tensorrt_version", "gpu_name", "compute_capability"} of this machine, torch-free."""
    return local_environment(trt.__version__, detect_gpu(device))


# ---------------------------------------------------------------------------------------- CUDA memory


class _CudaPython:
    """Device memory, copies, a non-blocking stream and events through cuda-python's runtime API."""

    def __init__(self, device: int):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6
        self.rt = cudart
        self._call(cudart.cudaSetDevice(device), "cudaSetDevice")
        self.stream = self._call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")

    def _call(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"{what} failed: {text.decode() if isinstance(text, bytes) else text}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr), "cudaFree")

    def h2d(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def d2h(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def synchronize(self) -> None:
        self._call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def event(self) -> Any:
        return self._call(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event: Any) -> None:
        self._call(self.rt.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._call(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._call(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def destroy_event(self, event: Any) -> None:
        self._call(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def close(self) -> None:
        self._call(self.rt.cudaStreamDestroy(self.stream), "cudaStreamDestroy")


class _TorchCuda:
    """The same services from torch CUDA tensors, for machines with torch but no cuda-python."""

    def __init__(self, device: int):
        import torch  # only on this path; the runtime never needs torch otherwise

        if not torch.cuda.is_available():
            raise UnverifiedError("cuda-python is not installed and torch sees no CUDA device", hint=CUDA_INSTALL_HINT)
        self.torch = torch
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)
        self.stream = torch.cuda.Stream(device=self.device)
        self._buffers: dict[int, Any] = {}

    @property
    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def malloc(self, nbytes: int) -> int:
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=self.device)
        self._buffers[t.data_ptr()] = t
        return t.data_ptr()

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr, None)

    def _bytes(self, host: np.ndarray) -> Any:
        return self.torch.from_numpy(host.reshape(-1).view(np.uint8))

    def h2d(self, ptr: int, host: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            self._buffers[ptr][: host.nbytes].copy_(self._bytes(host), non_blocking=True)

    def d2h(self, host: np.ndarray, ptr: int) -> None:
        with self.torch.cuda.stream(self.stream):
            self._bytes(host).copy_(self._buffers[ptr][: host.nbytes], non_blocking=True)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def event(self) -> Any:
        return self.torch.cuda.Event(enable_timing=True)

    def record(self, event: Any) -> None:
        event.record(self.stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(start.elapsed_time(end))

    def destroy_event(self, event: Any) -> None:
        pass

    def close(self) -> None:
        self._buffers.clear()


def _cuda_provider(device: int) -> Any:
    """cuda-python if importable, else torch CUDA if torch is installed; UnverifiedError otherwise."""
    try:
        return _CudaPython(device)
    except ImportError:
        pass
    if importlib.util.find_spec("torch") is None:
        raise UnverifiedError(
            "neither cuda-python nor torch is installed to hold GPU buffers for TensorRT", hint=CUDA_INSTALL_HINT
        )
    return _TorchCuda(device)


# ------------------------------------------------------------------------------------------- backend


class TensorRTBackend:
    """One TensorRT engine, run from numpy arrays. Refuses engines built for another TensorRT or GPU."""

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, *, device: int = 0, strict_gpu_model: bool = True):
        self.engine_path = Path(engine_path)
        self._cuda: Any = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)

        if not self.engine_path.is_file():
            raise EdgetlError(f"engine file {self.engine_path} does not exist")
        read_engine_manifest(self.engine_path)  # a missing sidecar is refused before TensorRT is even imported
        trt = import_tensorrt()
        local = local_trt_environment(trt, device)
        self.manifest: EngineManifest = check_engine_file(self.engine_path, local, strict_gpu_model=strict_gpu_model)

        # Select the device (and make the stream) before TensorRT creates anything on it.
        self._cuda = _cuda_provider(device)
        logger = trt_logger(trt)
        mark = logger.capture.mark()
        self._runtime = trt.Runtime(logger)
        if self.manifest.version_compatible:
            self._runtime.engine_host_code_allowed = True  # version-compatible plans embed a lean runtime
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise EdgetlError(
                f"TensorRT {trt.__version__} could not load {self.engine_path.name}: "
                f"{logger.capture.errors_since(mark)}; {REBUILD_HINT}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EdgetlError(
                f"TensorRT could not create an execution context for {self.engine_path.name} "
                f"(GPU memory?): {logger.capture.errors_since(mark)}"
            )

        inputs: list[str] = []
        outputs: list[str] = []
        self._dtypes: dict[str, np.dtype] = {}
        for i in range(self._engine.num_io_tensors):
            tname = self._engine.get_tensor_name(i)
            self._dtypes[tname] = numpy_dtype(self._engine.get_tensor_dtype(tname))
            (inputs if self._engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT else outputs).append(tname)
        self.input_names: list[str] = inputs
        self.output_names: list[str] = outputs
        # The predictor's optional hint: the one batch size the engine takes, or None when it is a range.
        first = self.manifest.profiles.get(inputs[0]) if inputs else None
        self.batch_size: int | None = (
            first["min"][0] if first and first["min"] and first["min"][0] == first["max"][0] else None
        )

    # -- protocol ------------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs in, execute on the backend's stream, copy outputs back; returns fresh arrays."""
        out_shapes = self._stage_inputs(feeds)
        outputs = {}
        for name, shape in out_shapes.items():
            host = np.empty(shape, dtype=self._dtypes[name])
            outputs[name] = host
        self._execute()
        for name, host in outputs.items():
            if host.nbytes:
                self._cuda.d2h(host, self._buffers[name][0])
        self._cuda.synchronize()
        return outputs

    def time_compute(self, feeds: Mapping[str, np.ndarray], iters: int = 100, warmup: int = 10) -> np.ndarray:
        """Compute-only latency per iteration in milliseconds (CUDA events around each execute; no copies)."""
        if iters < 1 or warmup < 0:
            raise EdgetlError(f"time_compute needs iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
        self._stage_inputs(feeds)
        self._cuda.synchronize()
        for _ in range(warmup):
            self._execute()
        self._cuda.synchronize()
        start, end = self._cuda.event(), self._cuda.event()
        try:
            times = np.empty(iters, dtype=np.float64)
            for i in range(iters):
                self._cuda.record(start)
                self._execute()
                self._cuda.record(end)
                times[i] = self._cuda.elapsed_ms(start, end)
        finally:
            self._cuda.destroy_event(start)
            self._cuda.destroy_event(end)
        return times

    def close(self) -> None:
        if self._cuda is not None:
            self._cuda.synchronize()
            for ptr, _ in self._buffers.values():
                self._cuda.free(ptr)
            self._buffers.clear()
            self._cuda.close()
            self._cuda = None

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- internals -----------------------------------------------------------------------------------
    def _ensure_buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, -1))
        if nbytes > cap:
            if cap >= 0:
                self._cuda.free(ptr)
            ptr = self._cuda.malloc(nbytes)
            self._buffers[name] = (ptr, max(nbytes, 1))
        self._context.set_tensor_address(name, ptr)
        return ptr

    def _stage_inputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        if self._cuda is None:
            raise EdgetlError(f"the TensorRT backend for {self.engine_path.name} is closed")
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise EdgetlError(
                f"{self.engine_path.name} takes inputs {self.input_names}; missing {missing}, unexpected {extra}"
            )
        staged = []
        for name in self.input_names:
            arr = np.asarray(feeds[name])
            want = self._dtypes[name]
            if arr.dtype != want:
                if arr.dtype.kind != want.kind and not (arr.dtype.kind in "iu" and want.kind in "iu"):
                    raise EdgetlError(f"input {name!r} is {arr.dtype}; {self.engine_path.name} expects {want}")
                arr = arr.astype(want)
            arr = np.ascontiguousarray(arr)
            if not self._context.set_input_shape(name, tuple(int(d) for d in arr.shape)):
                lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
                raise EdgetlError(
                    f"input {name!r} has shape {list(arr.shape)}; {self.engine_path.name} accepts "
                    f"{list(lo)} to {list(hi)}"
                )
            staged.append((name, arr))
        for name, arr in staged:
            ptr = self._ensure_buffer(name, arr.nbytes)
            if arr.nbytes:
                self._cuda.h2d(ptr, arr)
        self._host_inputs = staged  # keep the host arrays alive until the stream syncs
        out_shapes = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise UnverifiedError(
                    f"output {name!r} has a data-dependent shape {list(shape)}; edgetl's TensorRT runner does not "
                    "support output allocators"
                )
            self._ensure_buffer(name, int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize)
            out_shapes[name] = shape
        return out_shapes

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._cuda.stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.engine_path.name}")

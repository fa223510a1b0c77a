"""TensorRT engine manifests (`<engine>.json` sidecars) and the check that an engine fits this machine.

A serialized TensorRT engine is tied to the TensorRT version that built it and to the GPU
architecture (NVIDIA's guidance: the exact GPU model), unless it was built version-compatible or
hardware-compatible. TensorRT offers no way to read an engine's build version before deserializing
it, and a mismatch only surfaces as `deserialize_cuda_engine(...) -> None` plus a log line. So every
engine edgetl writes gets a JSON sidecar, and loading compares it with the local TensorRT and GPU
first, with one line that says what to do.

Torch-free on purpose: the runtime uses it on devices without torch, and
`edgetl.compile.tensorrt` reuses it at build time. Nothing here imports TensorRT at module level.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.atomic import atomic_write_bytes  # writes any buffer (TensorRT's IHostMemory too)
from edgetl.runtime.manifest import sha256_file

SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".json"
# What a user runs to get an engine for the machine in front of them.
REBUILD_HINT = "rebuild it on this machine with `edgetl build <bundle>` (or `edgetl export <run> --engine`)"
HARDWARE_COMPAT_LEVELS = ("none", "ampere_plus", "same_cc")


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """`model.int8.engine` -> `model.int8.engine.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


@dataclass
class EngineManifest:
    """What built an engine, for which machine, from which ONNX. Written as `<engine>.json`."""

    engine_file: str
    engine_sha256: str
    onnx_file: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str  # fp32 | fp16 | int8
    strongly_typed: bool
    builder_flags: list[str] = field(default_factory=list)
    # {input name: {"min": [...], "opt": [...], "max": [...]}}
    profiles: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # {"inputs": [{"name", "dtype", "shape"}], "outputs": [...]} as the network declared them (-1 = dynamic)
    io: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    workspace_bytes: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    dla_fallback_layers: list[str] = field(default_factory=list)
    hardware_compatibility: str = "none"  # none | ampere_plus | same_cc
    version_compatible: bool = False
    timing_cache: dict[str, Any] | None = None  # {"file", "loaded", "saved"}
    build_seconds: float = 0.0
    created_utc: str = ""
    producer: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "engine manifest") -> EngineManifest:
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise EdgetlError(f"{source} has no integer schema_version; {REBUILD_HINT}")
        if version > SCHEMA_VERSION:
            raise EdgetlError(
                f"{source} has schema_version {version}, newer than this edgetl knows ({SCHEMA_VERSION}): upgrade edgetl"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }  # type: ignore[misc]
        missing = sorted(required - set(data))
        if missing:
            raise EdgetlError(f"{source} lacks {', '.join(missing)}; {REBUILD_HINT}")
        if data.get("hardware_compatibility", "none") not in HARDWARE_COMPAT_LEVELS:
            raise EdgetlError(
                f"{source} has hardware_compatibility={data['hardware_compatibility']!r}; "
                f"expected one of {', '.join(HARDWARE_COMPAT_LEVELS)}"
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    def write(self, engine_path: str | os.PathLike) -> Path:
        path = sidecar_path(engine_path)
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        return path


def read_engine_manifest(engine_path: str | os.PathLike) -> EngineManifest:
    """Read `<engine>.json`; a missing or unreadable sidecar is a user-facing error."""
    engine_path = Path(engine_path)
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise EdgetlError(
            f"{engine_path.name} has no engine manifest ({side.name}) beside it, so its TensorRT version and GPU "
            f"are unknown; {REBUILD_HINT}"
        )
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise EdgetlError(f"{side.name} is not readable JSON ({e}); {REBUILD_HINT}") from None
    if not isinstance(data, dict):
        raise EdgetlError(f"{side.name} is not a JSON object; {REBUILD_HINT}")
    return EngineManifest.from_dict(data, source=side.name)


# --------------------------------------------------------------------------------------------- versions


def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); stops at the first non-numeric part ('10.16.0b1' -> (10, 16))."""
    out: list[int] = []
    for part in str(text).strip().split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    if not out:
        raise EdgetlError(f"cannot read TensorRT version {text!r}")
    return tuple(out)


def _same_build(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same major.minor.patch, and the same build number when both carry one (pip: 10.3.0.26, JetPack: 10.3.0)."""
    a3, b3 = (a + (0, 0, 0))[:3], (b + (0, 0, 0))[:3]
    if a3 != b3:
        return False
    return len(a) < 4 or len(b) < 4 or a[3] == b[3]


def _cc(text: str) -> tuple[int, int]:
    try:
        major, minor = str(text).strip().split(".")
        return int(major), int(minor)
    except ValueError:
        raise EdgetlError(f"cannot read compute capability {text!r} (expected e.g. '8.7')") from None


def _norm(name: str) -> str:
    return " ".join(str(name).split()).lower()


def check_compatible(
    manifest: Mapping[str, Any] | EngineManifest,
    local: Mapping[str, Any],
    *,
    engine_name: str = "the engine",
    strict_gpu_model: bool = True,
) -> None:
    """Refuse, with one line, an engine that this machine's TensorRT or GPU cannot (or should not) load.

    Pure: `manifest` is the sidecar's content, `local` is {"tensorrt_version", "gpu_name",
    "compute_capability"} of this machine. Rules:
      - TensorRT: same version, unless the engine is version-compatible, which then loads on the same
        major version, same or newer (NVIDIA documents forward compatibility; not backwards).
      - GPU: by hardware_compatibility — "none": same compute capability and, when `strict_gpu_model`,
        the same GPU model (NVIDIA: build on the exact model); "same_cc": same compute capability;
        "ampere_plus": any GPU of compute capability 8.0 or newer.
    """
    m = manifest.to_dict() if isinstance(manifest, EngineManifest) else dict(manifest)
    built_v, built_gpu, built_cc = m["tensorrt_version"], m["gpu_name"], m["compute_capability"]
    local_v, local_gpu, local_cc = local["tensorrt_version"], local["gpu_name"], local["compute_capability"]
    head = (
        f"{engine_name} was built with TensorRT {built_v} for {built_gpu} (compute {built_cc}); "
        f"this machine has TensorRT {local_v} on {local_gpu} (compute {local_cc})"
    )

    bv, lv = parse_version(built_v), parse_version(local_v)
    if m.get("version_compatible"):
        if bv[0] != lv[0] or lv[:3] < bv[:3]:
            raise EdgetlError(
                f"{head}: a version-compatible engine loads only on TensorRT {bv[0]}.x at or above "
                f"{'.'.join(map(str, bv[:3]))}; {REBUILD_HINT}"
            )
    elif not _same_build(bv, lv):
        raise EdgetlError(f"{head}: engines load only on the TensorRT version that built them; {REBUILD_HINT}")

    level = m.get("hardware_compatibility", "none") or "none"
    bcc, lcc = _cc(built_cc), _cc(local_cc)
    if level == "ampere_plus":
        if lcc < (8, 0):
            raise EdgetlError(f"{head}: an Ampere-plus engine needs compute 8.0 or newer; {REBUILD_HINT}")
    elif level == "same_cc":
        if bcc != lcc:
            raise EdgetlError(f"{head}: this engine needs compute {built_cc}; {REBUILD_HINT}")
    elif level == "none":
        if bcc != lcc:
            raise EdgetlError(f"{head}: engines are tied to the GPU architecture; {REBUILD_HINT}")
        if strict_gpu_model and _norm(built_gpu) != _norm(local_gpu):
            raise EdgetlError(
                f"{head}: same architecture but another GPU model, which NVIDIA does not support for engines; "
                f"{REBUILD_HINT} (or build it hardware-compatible)"
            )
    else:
        raise EdgetlError(f"{engine_name} manifest has hardware_compatibility={level!r}; {REBUILD_HINT}")


def check_engine_file(
    engine_path: str | os.PathLike,
    local: Mapping[str, Any],
    *,
    strict_gpu_model: bool = True,
    verify_hash: bool = True,
) -> EngineManifest:
    """Read the sidecar, check it describes this very file, and check it fits `local`. Returns the manifest."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EdgetlError(f"engine file {engine_path} does not exist")
    manifest = read_engine_manifest(engine_path)
    if verify_hash:
        digest = sha256_file(engine_path)
        if digest != manifest.engine_sha256:
            raise EdgetlError(
                f"{sidecar_path(engine_path).name} does not describe {engine_path.name} (sha256 differs); "
                f"{REBUILD_HINT}"
            )
    check_compatible(manifest, local, engine_name=engine_path.name, strict_gpu_model=strict_gpu_model)
    return manifest


# ------------------------------------------------------------------------------------ local GPU facts


def gpu_from_cuda_python(device: int = 0) -> dict[str, str] | None:
    """GPU name and compute capability through cuda-python (works on Jetson too); None when unavailable."""
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 / cuda-bindings 13
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]  # old cuda-python
        err, prop = cudart.cudaGetDeviceProperties(device)
    except Exception:  # no cuda-python, no driver, no device: not this probe's business to explain
        return None
    if err != cudart.cudaError_t.cudaSuccess or prop is None:
        return None
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return {"gpu_name": str(name).strip(), "compute_capability": f"{prop.major}.{prop.minor}", "source": "cuda-python"}


def gpu_from_nvidia_smi(device: int = 0) -> dict[str, str] | None:
    """GPU name and compute capability from `nvidia-smi` (needs a driver that knows `compute_cap`)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    argv = [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader", f"--id={device}"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 1)]
        if len(parts) == 2 and parts[0] and parts[1].replace(".", "", 1).isdigit():
            return {"gpu_name": parts[0], "compute_capability": parts[1], "source": "nvidia-smi"}
    return None


def detect_gpu(device: int = 0) -> dict[str, str] | None:
    """Torch-free GPU probe for the runtime: cuda-python first (it is what runs the engine), then nvidia-smi."""
    return gpu_from_cuda_python(device) or gpu_from_nvidia_smi(device)


def local_environment(trt_version: str, gpu: Mapping[str, str] | None) -> dict[str, str]:
    """The `local` mapping that check_compatible takes; no GPU is a missing capability, not a user error."""
    if not gpu:
        raise UnverifiedError(
            "no NVIDIA GPU found (cuda-python and nvidia-smi both failed): a TensorRT engine cannot run here"
        )
    return {
        "tensorrt_version": str(trt_version),
        "gpu_name": gpu["gpu_name"],
        "compute_capability": gpu["compute_capability"],
    }

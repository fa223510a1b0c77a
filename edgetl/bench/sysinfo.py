"""What machine is this? CPU, memory, OS, package versions, NVIDIA GPU, Jetson board and power mode.

`collect_system_info()` uses the standard library only (package versions are read from installed metadata,
never by importing torch), never raises, and bounds every subprocess with a timeout, so the device side of a
remote benchmark can run it with nothing but numpy + onnxruntime installed. `detect_local_device(info)` maps
the result to a device profile name; it needs the profile registry (pydantic + pyyaml), so on a remote run the
host calls it on the info the device sent back.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["CPU_FLAGS_OF_INTEREST", "collect_system_info", "detect_local_device", "l4t_to_jetpack"]

CPU_FLAGS_OF_INTEREST = {
    "x86_64": (
        "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
        "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    ),
    # /proc/cpuinfo "Features": asimddp = SDOT/UDOT int8 dot product, asimdhp/fphp = FP16 arithmetic
    "aarch64": ("asimd", "asimddp", "asimdhp", "fphp", "sve", "sve2", "i8mm", "bf16"),
}  # fmt: skip
_SUBPROCESS_TIMEOUT_S = 10.0
# packages reported by version; read from installed metadata (no import), several dist names per package
_PACKAGES = {
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_libs"),
    "nvidia-modelopt": ("nvidia-modelopt",),
    "edgetl": ("edgetl",),
}
# L4T (from /etc/nv_tegra_release) → JetPack, as NVIDIA's JetPack archive lists them
_L4T_JETPACK = {
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}


def _run(argv: list[str], timeout: float = _SUBPROCESS_TIMEOUT_S) -> str | None:
    """stdout of `argv` (no shell), or None if it is missing, fails or times out."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpu_info() -> dict:
    info: dict = {"model": None, "vendor": None, "cores": None, "threads": os.cpu_count(), "mhz": None}
    flags: set[str] = set()
    text = _read("/proc/cpuinfo") or ""
    cores_per_socket: dict[str, set] = {}
    phys = core = None
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, val = (s.strip() for s in line.partition(":"))
        if key in ("model name", "Model") and not info["model"]:
            info["model"] = val
        elif key in ("vendor_id", "CPU implementer") and not info["vendor"]:
            info["vendor"] = val
        elif key == "cpu family" and "family" not in info:
            info["family"] = val
        elif key == "model" and "model_number" not in info:
            info["model_number"] = val
        elif key == "cpu MHz" and info["mhz"] is None:
            try:
                info["mhz"] = float(val)
            except ValueError:
                pass
        elif key in ("flags", "Features") and not flags:
            flags = set(val.split())
        elif key == "physical id":
            phys = val
        elif key == "core id":
            core = val
            cores_per_socket.setdefault(phys or "0", set()).add(core)
    if cores_per_socket:
        info["cores"] = sum(len(c) for c in cores_per_socket.values())
    if not info["model"]:
        lscpu = _run(["lscpu"])
        if lscpu:
            m = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
            info["model"] = m.group(1).strip() if m else None
        info["model"] = info["model"] or platform.processor() or None
    if info["cores"] is None:
        info["cores"] = info["threads"]
    arch = "aarch64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    info["flags"] = {f: (f in flags) for f in CPU_FLAGS_OF_INTEREST[arch]}
    return info


def _memory_gb() -> float | None:
    text = _read("/proc/meminfo")
    if text:
        m = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.M)
        if m:
            return round(int(m.group(1)) / 1024**2, 2)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 2)
    except (ValueError, OSError, AttributeError):
        return None


def _os_info() -> dict:
    pretty = None
    text = _read("/etc/os-release")
    if text:
        m = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text, re.M)
        pretty = m.group(1) if m else None
    return {"system": platform.system(), "release": platform.release(), "distribution": pretty}


def _versions() -> dict:
    out: dict[str, str | None] = {}
    for key, dists in _PACKAGES.items():
        out[key] = None
        for d in dists:
            try:
                out[key] = metadata.version(d)
                break
            except metadata.PackageNotFoundError:
                continue
    if out["tensorrt"] is None and "tensorrt" in sys.modules:  # e.g. JetPack's apt-installed bindings, imported
        out["tensorrt"] = getattr(sys.modules["tensorrt"], "__version__", None)
    return out


def _tensorrt_import_version() -> str | None:
    """JetPack installs TensorRT's Python bindings with apt (no pip metadata): ask the module, in a subprocess."""
    out = _run([sys.executable, "-c", "import tensorrt; print(tensorrt.__version__)"], timeout=30)
    return out.strip() if out else None


def _nvidia_gpus() -> list[dict]:
    fields = ["name", "driver_version", "memory.total", "compute_cap"]
    out = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
    if out is None:  # older drivers lack compute_cap
        fields = fields[:3]
        out = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
    if not out:
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < len(fields):
            continue
        g = {"name": parts[0], "driver": parts[1], "memory_mb": None, "compute_capability": None}
        try:
            g["memory_mb"] = float(parts[2])
        except ValueError:
            pass
        if len(fields) == 4 and re.match(r"^\d+\.\d+$", parts[3]):
            g["compute_capability"] = parts[3]
        gpus.append(g)
    return gpus


def l4t_to_jetpack(l4t: str | None) -> str | None:
    """JetPack release for an L4T version string like "36.4.3" (None when unknown)."""
    if not l4t:
        return None
    if l4t in _L4T_JETPACK:
        return _L4T_JETPACK[l4t]
    return _L4T_JETPACK.get(".".join((l4t.split(".") + ["0", "0"])[:3]))


def _parse_l4t(text: str | None) -> str | None:
    # "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
    if not text:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    rev = m.group(2).split(".")
    return ".".join([m.group(1), *(rev + ["0"])[:2]])


def _jetson_info() -> dict | None:
    model = _read("/proc/device-tree/model")
    model = model.replace("\x00", "").strip() if model else None
    release = _read("/etc/nv_tegra_release")
    if not release and not (model and "jetson" in model.lower()):
        return None
    l4t = _parse_l4t(release)
    info: dict = {"model": model, "l4t": l4t, "jetpack": None, "jetpack_source": None, "power_mode": None}
    dpkg = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if dpkg and dpkg.strip():
        info["jetpack"] = dpkg.strip().split("+")[0].split("-")[0]
        info["jetpack_source"] = "dpkg nvidia-jetpack"
    elif l4t_to_jetpack(l4t):
        info["jetpack"] = l4t_to_jetpack(l4t)
        info["jetpack_source"] = f"L4T {l4t} mapping"
    q = _run(["nvpmodel", "-q"])
    if q:
        m = re.search(r"NV Power Mode:\s*(\S+)", q)
        mid = re.search(r"^\s*(\d+)\s*$", q, re.M)
        info["power_mode"] = {"name": m.group(1) if m else None, "id": int(mid.group(1)) if mid else None}
    clocks = _run(["jetson_clocks", "--show"])
    if clocks:
        info["clocks"] = clocks.strip()[:4000]
    return info


def collect_system_info() -> dict:
    """A JSON-able description of this machine. Never raises; unknown values are None."""
    info: dict = {
        "arch": platform.machine(),
        "os": {},
        "python": platform.python_version(),
        "cpu": {},
        "memory_gb": None,
        "versions": {},
        "gpus": [],
        "jetson": None,
        "errors": [],
    }
    steps = {
        "os": _os_info,
        "cpu": _cpu_info,
        "memory_gb": _memory_gb,
        "versions": _versions,
        "gpus": _nvidia_gpus,
        "jetson": _jetson_info,
    }
    for key, fn in steps.items():
        try:
            info[key] = fn()
        except Exception as e:  # never crash a benchmark over a description of the machine
            info["errors"].append(f"{key}: {type(e).__name__}: {e}")
    try:
        if info["jetson"] and info["versions"].get("tensorrt") is None:
            info["versions"]["tensorrt"] = _tensorrt_import_version()
    except Exception as e:
        info["errors"].append(f"tensorrt: {type(e).__name__}: {e}")
    return info


def detect_local_device(info: dict | None = None) -> str:
    """Best-matching device profile name for `info` (default: this machine).

    Jetson: by board model (`detect` strings of the profiles), Orin Nano in 25W / MAXN_SUPER → the Super profile.
    Else the first NVIDIA GPU by its nvidia-smi name. Else `cpu-x86-64` / `cpu-arm64` by architecture.
    Needs the profile registry (pydantic + pyyaml).
    """
    from edgetl.bench.devices import match_device_profile
    from edgetl.errors import EdgetlError

    info = collect_system_info() if info is None else info
    jetson = info.get("jetson")
    if jetson and jetson.get("model"):
        name = match_device_profile(jetson["model"], kinds=("jetson",))
        if name == "jetson-orin-nano":
            mode = ((jetson.get("power_mode") or {}).get("name") or "").upper()
            if mode in ("25W", "MAXN_SUPER"):
                name = "jetson-orin-nano-super"
        if name:
            return name
    for gpu in info.get("gpus") or []:
        name = match_device_profile(gpu.get("name") or "", kinds=("gpu", "jetson"))
        if name:
            return name
    arch = (info.get("arch") or "").lower()
    if arch in ("x86_64", "amd64"):
        return "cpu-x86-64"
    if arch in ("aarch64", "arm64"):
        return "cpu-arm64"
    raise EdgetlError(f"cannot pick a device profile for architecture {arch!r}; pass --device explicitly")

"""Is TensorRT usable here, and on which GPU? Asked by export, compile, bench and the CLI, so it lives at the bottom.

`import tensorrt` happens only inside functions: importing this module never fails without TensorRT.
"""

from __future__ import annotations

import importlib.util

from edgetl.errors import UnverifiedError
from edgetl.runtime.engine_manifest import gpu_from_cuda_python, gpu_from_nvidia_smi
from edgetl.runtime.tensorrt_backend import TENSORRT_INSTALL_HINT, import_tensorrt


def trt_major() -> int:
    """Major version of the installed TensorRT; UnverifiedError when there is none."""
    trt = import_tensorrt()
    return int(str(trt.__version__).split(".")[0])


def detect_gpu_for_build(device: int = 0) -> dict[str, str] | None:
    """Name and compute capability of the GPU that builds: torch.cuda, else cuda-python, else nvidia-smi.

    torch and cuda-python both read cudaGetDeviceProperties, which is what the runtime's check reads, so
    they come before nvidia-smi (NVML names may be spelt differently, e.g. on Jetson).
    """
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability(device)
                return {
                    "gpu_name": torch.cuda.get_device_name(device),
                    "compute_capability": f"{major}.{minor}",
                    "source": "torch",
                }
        except Exception:  # a broken CUDA torch must not hide the other probes
            pass
    return gpu_from_cuda_python(device) or gpu_from_nvidia_smi(device)


def trt_available() -> tuple[bool, str]:
    """(True, what was found) when TensorRT >= 10 and an NVIDIA GPU are here; else (False, the reason)."""
    try:
        trt = import_tensorrt()
    except UnverifiedError as e:
        if importlib.util.find_spec("tensorrt") is None:
            return (
                False,
                f"TensorRT not installed: engine build/run unverified on this machine ({TENSORRT_INSTALL_HINT})",
            )
        return (
            False,
            f"TensorRT is installed but does not load: {e.message}; engine build/run unverified on this machine",
        )
    version = str(trt.__version__)
    if int(version.split(".")[0]) < 10:
        return (
            False,
            f"TensorRT {version} found; edgetl builds engines with TensorRT 10 or 11 ({TENSORRT_INSTALL_HINT})",
        )
    gpu = detect_gpu_for_build()
    if not gpu:
        return (
            False,
            f"TensorRT {version} installed but no NVIDIA GPU found: engine build/run unverified on this machine",
        )
    return True, f"TensorRT {version} on {gpu['gpu_name']} (compute {gpu['compute_capability']})"

"""Device profiles: what a target can do, where each figure comes from, and one registry to look them up.

A profile is a YAML file (one device per file) validated by `DeviceProfile`. Shipped profiles live in
`devices/` at the repository root; `EDGETL_DEVICES_DIR` adds a directory of your own (os.pathsep-separated
for several). Names and aliases are exact (no prefix or fuzzy matching) and must be unique across all
loaded files: a duplicate is an error naming both files.

Every numeric figure carries a source string in `sources`, starting with its provenance:
  quoted:      copied from a named vendor document
  derived:     computed from quoted figures; the string says how
  measured:    measured on a named machine
  calibrated:  fitted so that `edgetl.bench.estimate` matches measurements (names what was fitted)
  assumption:  a judgement with no measurement behind it; treat the estimate that uses it as rough
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgetl.errors import EdgetlError
from edgetl.yaml_model import load_yaml_model

MAX_PROFILE_BYTES = 1_000_000  # a profile is a few kB

__all__ = [
    "DeviceProfile",
    "Efficiency",
    "PowerMode",
    "SOURCE_PREFIXES",
    "default_profile_dirs",
    "get_device_profile",
    "list_device_profiles",
    "load_profile_file",
    "match_device_profile",
    "resolve_device_profile",
]

ENV_DIR = "EDGETL_DEVICES_DIR"
SOURCE_PREFIXES = ("quoted:", "derived:", "measured:", "calibrated:", "assumption:")
# figures that must name a source when present (dotted names for nested ones)
SOURCED_FIELDS = (
    "compute_capability",
    "peak_int8_tops",
    "peak_fp16_tflops",
    "peak_fp32_tflops",
    "memory_bandwidth_gbs",
    "memory_gb",
    "dla_count",
    "quoted_int8_tops_sparse",
    "efficiency",
    "node_overhead_us",
    "pointwise_overhead_us",
)
_NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerMode(_Strict):
    """A Jetson `nvpmodel` mode as NVIDIA names it (e.g. `15W`, `MAXN`, `MAXN_SUPER`)."""

    name: str
    id: int | None = Field(default=None, ge=0, description="nvpmodel -m id, where it is fixed across releases")
    watts: float | None = Field(default=None, gt=0)
    note: str | None = None


class Efficiency(_Strict):
    """Fraction of each peak that real kernels reach at batch 1, used by the latency estimate.

    `memory` scales `memory_bandwidth_gbs`; on CPUs it may exceed 1 because batch-1 activations stay in cache.
    """

    int8: float = Field(gt=0, le=1)
    fp16: float = Field(gt=0, le=1)
    fp32: float = Field(gt=0, le=1)
    memory: float = Field(gt=0, le=4)


class DeviceProfile(_Strict):
    name: str = Field(pattern=_NAME_RE)
    display_name: str
    kind: Literal["jetson", "gpu", "cpu"]
    arch: Literal["x86_64", "aarch64"]
    status: Literal["sourced", "calibrated", "estimate"] = Field(
        description="sourced: vendor figures (some derived); calibrated: fitted on a named machine; "
        "estimate: derived without a measurement or vendor figure; treat as rough"
    )
    aliases: list[str] = Field(default_factory=list)
    detect: list[str] = Field(
        default_factory=list,
        description="substrings (case-insensitive) of an nvidia-smi GPU name or Jetson board model that identify "
        "this device; the longest match wins",
    )
    compute_capability: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    peak_int8_tops: float = Field(gt=0, description="dense INT8 tera-ops/s of the engine the estimate targets")
    peak_fp16_tflops: float = Field(gt=0, description="dense FP16 TFLOPS")
    peak_fp32_tflops: float = Field(gt=0, description="FP32 TFLOPS (no tensor cores)")
    quoted_int8_tops_sparse: float | None = Field(
        default=None, gt=0, description="the headline figure as the vendor quotes it (sparse; Jetson: GPU + DLA)"
    )
    memory_bandwidth_gbs: float = Field(gt=0)
    memory_gb: float = Field(gt=0)
    dla_count: int = Field(default=0, ge=0)
    tensorrt_versions: list[str] = Field(default_factory=list)
    jetpack_versions: list[str] = Field(default_factory=list)
    power_modes: list[PowerMode] = Field(default_factory=list)
    efficiency: Efficiency
    node_overhead_us: float = Field(
        ge=0, description="fixed cost per Conv/Gemm/MatMul kernel (launch / dispatch, thread-pool fork-join)"
    )
    pointwise_overhead_us: float | None = Field(
        default=None,
        ge=0,
        description="fixed cost per other kernel (element-wise, pooling, Q/DQ); None: same as node_overhead_us. "
        "On CPUs these small kernels run on one thread and cost less to dispatch",
    )
    sources: dict[str, str]
    notes: str | None = None

    @field_validator("aliases")
    @classmethod
    def _aliases_ok(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.match(_NAME_RE, a):
                raise ValueError(f"alias {a!r} must match {_NAME_RE}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate alias in {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        if self.name in self.aliases:
            raise ValueError(f"alias {self.name!r} repeats the profile name")
        if self.kind == "jetson":
            if not self.jetpack_versions:
                raise ValueError("jetpack_versions: a jetson profile must list the JetPack releases it expects")
            if not self.power_modes:
                raise ValueError("power_modes: a jetson profile must list its nvpmodel power modes")
            if self.arch != "aarch64":
                raise ValueError("arch: a jetson is aarch64")
        else:
            if self.jetpack_versions:
                raise ValueError(f"jetpack_versions: only for jetson profiles, not kind {self.kind!r}")
            if self.power_modes:
                raise ValueError(f"power_modes: only for jetson profiles, not kind {self.kind!r}")
        if self.kind == "cpu":
            if self.compute_capability is not None:
                raise ValueError("compute_capability: must be null for a cpu profile")
            if self.dla_count:
                raise ValueError("dla_count: must be 0 for a cpu profile")
        elif self.compute_capability is None:
            raise ValueError(f"compute_capability: required for kind {self.kind!r}")
        data = self.model_dump()
        for key in self.sources:
            if key not in SOURCED_FIELDS:
                raise ValueError(f"sources.{key}: not a sourced figure (one of {', '.join(SOURCED_FIELDS)})")
        for key in SOURCED_FIELDS:
            if data.get(key) is None:
                continue
            src = self.sources.get(key, "").strip()
            if not src:
                raise ValueError(f"sources.{key}: missing; every figure needs a source")
            if not src.startswith(SOURCE_PREFIXES):
                raise ValueError(f"sources.{key}: must start with one of {', '.join(SOURCE_PREFIXES)}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def peak_ops_per_s(self, precision: str) -> float:
        """Peak operations per second for `precision` (int8 | fp16 | fp32), before efficiency."""
        if precision == "int8":
            return self.peak_int8_tops * 1e12
        if precision == "fp16":
            return self.peak_fp16_tflops * 1e12
        if precision == "fp32":
            return self.peak_fp32_tflops * 1e12
        raise EdgetlError(f"precision {precision!r} is not one of int8, fp16, fp32")

    def overhead_us(self, anchor: bool) -> float:
        """Per-kernel overhead: `node_overhead_us` for Conv/Gemm/MatMul kernels, else `pointwise_overhead_us`."""
        if anchor or self.pointwise_overhead_us is None:
            return self.node_overhead_us
        return self.pointwise_overhead_us

    def summary(self) -> dict:
        """The figures a table needs, flat."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "kind": self.kind,
            "status": self.status,
            "int8_tops": self.peak_int8_tops,
            "fp16_tflops": self.peak_fp16_tflops,
            "fp32_tflops": self.peak_fp32_tflops,
            "bandwidth_gbs": self.memory_bandwidth_gbs,
            "memory_gb": self.memory_gb,
            "aliases": list(self.aliases),
        }


def load_profile_file(path: str | os.PathLike) -> DeviceProfile:
    """Load and validate one profile YAML. Any problem is an `EdgetlError` naming the file (and field)."""
    return load_yaml_model(path, DeviceProfile, "device profile", MAX_PROFILE_BYTES)


def default_profile_dirs() -> list[Path]:
    """`EDGETL_DEVICES_DIR` entries first, then the shipped `devices/` directory (if present)."""
    dirs = [Path(d) for d in os.environ.get(ENV_DIR, "").split(os.pathsep) if d.strip()]
    shipped = Path(__file__).resolve().parents[2] / "devices"  # a source checkout
    if not shipped.is_dir():  # a wheel install: pyproject's data-files put them under <prefix>/share/edgetl/devices
        import sys

        shipped = Path(sys.prefix) / "share" / "edgetl" / "devices"
    if shipped not in dirs:
        dirs.append(shipped)
    return dirs


@functools.lru_cache(maxsize=8)
def _registry(dirs: tuple[Path, ...]) -> tuple[dict[str, DeviceProfile], dict[str, Path]]:
    by_name: dict[str, DeviceProfile] = {}
    origin: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            if os.environ.get(ENV_DIR) and str(d) in os.environ[ENV_DIR].split(os.pathsep):
                raise EdgetlError(f"{ENV_DIR}: {d} is not a directory")
            continue
        for f in sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml"))):
            prof = load_profile_file(f)
            for n in prof.names:
                if n in by_name:
                    raise EdgetlError(
                        f"{f}: device name or alias {n!r} is already defined by {origin[n]}; names must be unique"
                    )
                by_name[n] = prof
                origin[n] = f
    return by_name, origin


def _current_registry() -> dict[str, DeviceProfile]:
    return _registry(tuple(default_profile_dirs()))[0]


def list_device_profiles() -> list[DeviceProfile]:
    """All loaded profiles (aliases not repeated), sorted by name."""
    seen = {p.name: p for p in _current_registry().values()}
    return [seen[k] for k in sorted(seen)]


def get_device_profile(name: str) -> DeviceProfile:
    """The profile called `name` (or with `name` among its aliases). Exact match only."""
    reg = _current_registry()
    if name in reg:
        return reg[name]
    known = sorted({p.name for p in reg.values()})
    if not known:
        dirs = ", ".join(str(d) for d in default_profile_dirs())
        raise EdgetlError(f"unknown device {name!r}: no device profiles found (looked in {dirs}; set {ENV_DIR})")
    aliases = sorted(n for n in reg if n not in known)
    alias_txt = f"; aliases: {', '.join(aliases)}" if aliases else ""
    raise EdgetlError(f"unknown device {name!r}; known devices: {', '.join(known)}{alias_txt}")


def resolve_device_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """For a CLI `--device`: a `.yaml`/`.yml` path loads that file, anything else is a registry name."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")):
        return load_profile_file(s)
    return get_device_profile(s)


def match_device_profile(
    text: str, *, kinds: tuple[str, ...] = ("jetson", "gpu"), profiles: list[DeviceProfile] | None = None
) -> str | None:
    """The profile whose `detect` substring (case-insensitive) occurs in `text` — longest match wins.

    `text` is an nvidia-smi GPU name or a Jetson board model. None when nothing matches.
    """
    low = text.lower()
    best: tuple[int, str] | None = None
    for prof in profiles if profiles is not None else list_device_profiles():
        if prof.kind not in kinds:
            continue
        for needle in prof.detect:
            if needle.lower() in low and (best is None or len(needle) > best[0]):
                best = (len(needle), prof.name)
    return best[1] if best else None

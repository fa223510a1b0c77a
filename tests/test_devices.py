"""Device profiles (registry, validation, sources) and system info / local device detection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from edgetl.bench import devices as dev
from edgetl.bench.devices import (
    SOURCE_PREFIXES,
    SOURCED_FIELDS,
    DeviceProfile,
    get_device_profile,
    list_device_profiles,
    load_profile_file,
    match_device_profile,
    resolve_device_profile,
)
from edgetl.bench.sysinfo import collect_system_info, detect_local_device, l4t_to_jetpack
from edgetl.errors import EdgetlError

SHIPPED = Path(__file__).resolve().parents[1] / "devices"
REQUIRED = {
    "jetson-orin-nano",
    "jetson-orin-nx",
    "jetson-agx-orin",
    "rtx-4090",
    "h100-sxm",
    "h100-pcie",
    "cpu-x86-64",
    "cpu-arm64",
}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """A registry of the shipped profiles plus `tmp_path/extra` (empty until a test writes there)."""
    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.setenv(dev.ENV_DIR, str(extra))
    return extra


def _profile_dict(name="my-board", **over):
    d = yaml.safe_load((SHIPPED / "rtx-4090.yaml").read_text())
    d.update(name=name, aliases=[], detect=[])
    d.update(over)
    return d


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_all_shipped_profiles_load():
    files = sorted(SHIPPED.glob("*.yaml"))
    assert len(files) >= len(REQUIRED)
    names = set()
    for f in files:
        p = load_profile_file(f)
        assert f.stem == p.name, f"{f.name}: file name should be the profile name"
        names.add(p.name)
    assert REQUIRED <= names
    assert {p.name for p in list_device_profiles()} >= REQUIRED


def test_every_figure_has_a_source_with_provenance():
    for p in list_device_profiles():
        data = p.model_dump()
        for field in SOURCED_FIELDS:
            if data.get(field) is None:
                continue
            src = p.sources.get(field, "")
            assert src.startswith(SOURCE_PREFIXES), f"{p.name}.{field}: {src!r}"
            assert len(src) > len("derived: ") + 5, f"{p.name}.{field}: the source says nothing"


def test_derived_and_estimated_figures_say_so():
    nano = get_device_profile("jetson-orin-nano")
    # NVIDIA quotes sparse INT8 for Orin; dense and FP16 are derived
    assert nano.sources["peak_int8_tops"].startswith("derived:")
    assert nano.sources["peak_fp16_tflops"].startswith("derived:")
    assert nano.peak_int8_tops == pytest.approx(nano.quoted_int8_tops_sparse / 2)
    assert get_device_profile("rtx-4090").sources["peak_int8_tops"].startswith("quoted:")
    arm = get_device_profile("cpu-arm64")
    assert arm.status == "estimate"
    assert all(arm.sources[k].startswith(("derived:", "assumption:", "quoted:")) for k in arm.sources)
    x86 = get_device_profile("cpu-x86-64")
    assert x86.status == "calibrated"
    assert x86.sources["efficiency"].startswith("calibrated:")
    assert x86.sources["peak_fp32_tflops"].startswith("derived:")


def test_device_figures_are_consistent():
    for p in list_device_profiles():
        if p.kind in ("gpu", "jetson"):
            assert p.peak_int8_tops >= p.peak_fp16_tflops >= p.peak_fp32_tflops * 0.99, p.name
            assert p.compute_capability is not None
        if p.kind == "jetson":
            assert p.power_modes and p.jetpack_versions
    assert get_device_profile("jetson-orin-nano").dla_count == 0
    assert get_device_profile("jetson-agx-orin").dla_count == 2


def test_alias_and_exact_names_only():
    assert get_device_profile("jetson-orin").name == "jetson-orin-nano"
    assert get_device_profile("jetson-orin-nano").name == "jetson-orin-nano"
    with pytest.raises(EdgetlError) as e:
        get_device_profile("jetson-orin-na")  # a prefix is not a name
    msg = str(e.value)
    assert "'jetson-orin-na'" in msg
    for name in REQUIRED:
        assert name in msg  # the error lists the known devices
    assert "\n" not in msg


def test_user_profile_dir_and_resolve_path(isolated):
    f = _write(isolated / "my-board.yaml", _profile_dict("my-board", aliases=["mine"]))
    dev._registry.cache_clear()
    assert get_device_profile("mine").name == "my-board"
    assert resolve_device_profile(str(f)).name == "my-board"
    assert resolve_device_profile("rtx-4090").name == "rtx-4090"


def test_duplicate_names_are_errors(isolated):
    _write(isolated / "a.yaml", _profile_dict("dup-board"))
    _write(isolated / "b.yaml", _profile_dict("dup-board"))
    with pytest.raises(EdgetlError, match=r"'dup-board' is already defined by .*a\.yaml"):
        get_device_profile("dup-board")


def test_alias_clashing_with_shipped_name_is_an_error(isolated):
    _write(isolated / "c.yaml", _profile_dict("other-board", aliases=["rtx-4090"]))
    with pytest.raises(EdgetlError, match="'rtx-4090' is already defined"):
        list_device_profiles()


def test_alias_repeating_own_name_is_an_error(tmp_path):
    f = _write(tmp_path / "x.yaml", _profile_dict("x-board", aliases=["x-board"]))
    with pytest.raises(EdgetlError, match="repeats the profile name"):
        load_profile_file(f)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"peak_int8_top": 1.0}, "peak_int8_top"),  # typo: extra fields are forbidden
        ({"kind": "tpu"}, "kind"),
        ({"memory_bandwidth_gbs": -5}, "memory_bandwidth_gbs"),
        ({"compute_capability": "eight"}, "compute_capability"),
        ({"efficiency": {"int8": 0.3, "fp16": 0.3, "fp32": 0.3}}, "efficiency.memory"),
    ],
)
def test_bad_field_is_one_line_naming_file_and_field(tmp_path, change, field):
    f = _write(tmp_path / "bad.yaml", _profile_dict("bad-board", **change))
    with pytest.raises(EdgetlError) as e:
        load_profile_file(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: {field}: "), msg  # the one format of edgetl.yaml_model (recipes too)
    assert "\n" not in msg


def test_missing_source_is_an_error(tmp_path):
    d = _profile_dict("nosrc-board")
    del d["sources"]["peak_int8_tops"]
    with pytest.raises(EdgetlError, match=r"sources\.peak_int8_tops: missing"):
        load_profile_file(_write(tmp_path / "n.yaml", d))
    d = _profile_dict("badsrc-board")
    d["sources"]["peak_int8_tops"] = "I think so"
    with pytest.raises(EdgetlError, match=r"sources\.peak_int8_tops: must start with"):
        load_profile_file(_write(tmp_path / "m.yaml", d))


def test_jetson_needs_power_modes(tmp_path):
    d = yaml.safe_load((SHIPPED / "jetson-orin-nano.yaml").read_text())
    d.update(name="j-board", aliases=[], power_modes=[])
    with pytest.raises(EdgetlError, match="power_modes"):
        load_profile_file(_write(tmp_path / "j.yaml", d))


def test_invalid_yaml_names_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("name: x\nkind: [gpu\n")
    with pytest.raises(EdgetlError, match=r"broken\.yaml: line \d+: invalid YAML"):
        load_profile_file(f)
    with pytest.raises(EdgetlError, match=r"device profile file not found: .*absent\.yaml"):
        load_profile_file(tmp_path / "absent.yaml")


def test_match_device_profile_by_name():
    assert match_device_profile("NVIDIA GeForce RTX 4090") == "rtx-4090"
    assert match_device_profile("NVIDIA H100 PCIe") == "h100-pcie"
    assert match_device_profile("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert match_device_profile("NVIDIA Jetson AGX Orin Developer Kit") == "jetson-agx-orin"
    assert match_device_profile("NVIDIA Jetson Orin Nano Developer Kit") == "jetson-orin-nano"
    assert match_device_profile("NVIDIA Jetson Orin NX Engineering Reference Developer Kit") == "jetson-orin-nx"
    assert match_device_profile("NVIDIA A100-SXM4-40GB") is None


def test_profile_model_is_strict():
    d = _profile_dict("strict-board")
    d["unknown"] = 1
    with pytest.raises(pydantic.ValidationError):
        DeviceProfile.model_validate(d)


# ------------------------------------------------------------------------------------------------ sysinfo


def test_collect_system_info_keys():
    info = collect_system_info()
    assert set(info) >= {"arch", "os", "python", "cpu", "memory_gb", "versions", "gpus", "jetson", "errors"}
    assert info["errors"] == []
    assert info["cpu"]["threads"] >= 1
    assert isinstance(info["cpu"]["flags"], dict)
    if info["arch"] == "x86_64":
        assert {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"} <= set(info["cpu"]["flags"])
    assert set(info["versions"]) >= {"torch", "onnxruntime", "onnx", "tensorrt", "numpy"}
    assert info["memory_gb"] and info["memory_gb"] > 0
    import json

    json.dumps(info)  # JSON-able, for shipping back from a device


def test_sysinfo_does_not_import_torch():
    code = (
        "import sys\n"
        "from edgetl.bench.sysinfo import collect_system_info\n"
        "info = collect_system_info()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'pydantic' not in sys.modules, 'pydantic imported'\n"
        "print(info['versions']['torch'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _info(arch="x86_64", gpus=(), jetson=None):
    return {"arch": arch, "gpus": list(gpus), "jetson": jetson}


def test_detect_local_device():
    assert detect_local_device(_info("x86_64")) == "cpu-x86-64"
    assert detect_local_device(_info("aarch64")) == "cpu-arm64"
    assert detect_local_device(_info(gpus=[{"name": "NVIDIA GeForce RTX 4090"}])) == "rtx-4090"
    assert detect_local_device(_info(gpus=[{"name": "NVIDIA H100 PCIe"}])) == "h100-pcie"
    # an unknown GPU falls back to the CPU profile of the architecture
    assert detect_local_device(_info(gpus=[{"name": "NVIDIA A2"}])) == "cpu-x86-64"
    nano = {"model": "NVIDIA Jetson Orin Nano Developer Kit", "power_mode": {"name": "15W", "id": 0}}
    assert detect_local_device(_info("aarch64", jetson=nano)) == "jetson-orin-nano"
    nano_super = {**nano, "power_mode": {"name": "MAXN_SUPER", "id": 2}}
    assert detect_local_device(_info("aarch64", jetson=nano_super)) == "jetson-orin-nano-super"
    agx = {"model": "NVIDIA Jetson AGX Orin Developer Kit", "power_mode": None}
    assert detect_local_device(_info("aarch64", jetson=agx)) == "jetson-agx-orin"
    with pytest.raises(EdgetlError, match="riscv64"):
        detect_local_device(_info("riscv64"))
    assert detect_local_device() in {p.name for p in list_device_profiles()}


def test_l4t_to_jetpack():
    assert l4t_to_jetpack("36.4.3") == "6.2"
    assert l4t_to_jetpack("35.4.1") == "5.1.2"
    assert l4t_to_jetpack("36.4") == "6.1"
    assert l4t_to_jetpack("99.1.0") is None
    assert l4t_to_jetpack(None) is None


def test_jetson_release_parsing():
    from edgetl.bench.sysinfo import _parse_l4t

    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"
    assert _parse_l4t(text) == "36.4.3"
    assert _parse_l4t("# R35 (release), REVISION: 4.1, GCID: 1") == "35.4.1"
    assert _parse_l4t("garbage") is None
